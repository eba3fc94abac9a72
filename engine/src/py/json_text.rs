//! `json.dumps(value, indent=2)`, byte for byte, for the plain values most answers are.
//!
//! A default `Worker.serialize` answers what mosec 0.9.8 answers: `json.dumps(data, indent=2)`.
//! With an indent, CPython's `json` runs its pure-Python encoder, which costs more per small
//! answer than everything else a worker does for it. This module writes the same text in Rust
//! for values made only of the exact types `dict` (with `str` keys), `list`, `tuple`, `str`,
//! `int`, `float`, `bool` and `None`, nested at most [`MAX_DEPTH`] deep. For anything else
//! (a subclass, a non-`str` key, a string that is not valid UTF-8, a deeper or circular value)
//! it answers `None` and the caller runs `json.dumps`, so every output and every error stays
//! exactly `json`'s.
//!
//! What `json.dumps(indent=2)` writes, and so what this writes:
//! - separators `","` between items and `": "` after keys; each item on its own line, indented
//!   by two spaces per level; `[]` and `{}` for empty containers;
//! - strings with `ensure_ascii`: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00XX`
//!   (lower-case hex) for every other character outside `' '..='~'`, UTF-16 surrogate pairs
//!   above U+FFFF;
//! - floats as `float.__repr__`, `NaN`, `Infinity` and `-Infinity`; ints as `int.__repr__`.

use std::io::Write as _;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// Containers nested deeper than this go to `json.dumps`, which also reports circular values.
pub const MAX_DEPTH: usize = 64;

/// Bytes reserved up front: most answers this serves are small.
const FIRST_CAPACITY: usize = 256;

/// `json.dumps(value, indent=2).encode()`, or None where the value is not plain (see the module).
///
/// # Errors
/// Only what Python raises while reading the value (a `repr` that fails, say).
#[pyfunction]
pub fn dumps_indent2<'py>(value: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let mut out = Vec::with_capacity(FIRST_CAPACITY);
    if !write_value(&mut out, value, 0)? {
        return Ok(None);
    }
    Ok(Some(PyBytes::new(value.py(), &out)))
}

/// Appends `value` at nesting `level`; false when it is not plain.
fn write_value(out: &mut Vec<u8>, value: &Bound<'_, PyAny>, level: usize) -> PyResult<bool> {
    if let Ok(text) = value.cast_exact::<PyString>() {
        return Ok(match text.to_str() {
            Ok(text) => {
                write_string(out, text);
                true
            }
            // Lone surrogates: `json` escapes them; leave that to it.
            Err(_) => false,
        });
    }
    if value.is_none() {
        out.extend_from_slice(b"null");
        return Ok(true);
    }
    if let Ok(flag) = value.cast_exact::<PyBool>() {
        out.extend_from_slice(if flag.is_true() { b"true" } else { b"false" });
        return Ok(true);
    }
    if value.is_exact_instance_of::<PyInt>() {
        match value.extract::<i64>() {
            // Writing to a Vec cannot fail.
            Ok(number) => {
                let _ = write!(out, "{number}");
            }
            // Past 64 bits: `int.__repr__` is the decimal text. One too long for it
            // (`sys.set_int_max_str_digits`) is left to `json`, which raises its own error.
            Err(_) => match value.repr() {
                Ok(text) => out.extend_from_slice(text.to_str()?.as_bytes()),
                Err(_) => return Ok(false),
            },
        }
        return Ok(true);
    }
    if let Ok(number) = value.cast_exact::<PyFloat>() {
        let number = number.value();
        if number.is_nan() {
            out.extend_from_slice(b"NaN");
        } else if number.is_infinite() {
            out.extend_from_slice(if number > 0.0 { b"Infinity" } else { b"-Infinity" });
        } else {
            // Python's shortest round-trip text and its choice of notation, exactly.
            out.extend_from_slice(value.repr()?.to_str()?.as_bytes());
        }
        return Ok(true);
    }
    if level >= MAX_DEPTH {
        return Ok(false);
    }
    if let Ok(list) = value.cast_exact::<PyList>() {
        return write_items(out, list.iter(), list.len(), level);
    }
    if let Ok(tuple) = value.cast_exact::<PyTuple>() {
        return write_items(out, tuple.iter(), tuple.len(), level);
    }
    if let Ok(dict) = value.cast_exact::<PyDict>() {
        return write_dict(out, dict, level);
    }
    Ok(false)
}

/// `[` items `]`, one per line, or `[]`.
fn write_items<'py>(
    out: &mut Vec<u8>,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    len: usize,
    level: usize,
) -> PyResult<bool> {
    if len == 0 {
        out.extend_from_slice(b"[]");
        return Ok(true);
    }
    out.push(b'[');
    for (index, item) in items.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        new_line(out, level + 1);
        if !write_value(out, &item, level + 1)? {
            return Ok(false);
        }
    }
    new_line(out, level);
    out.push(b']');
    Ok(true)
}

/// `{` `"key": value` pairs `}`, one per line, or `{}`; false at the first key that is not an
/// exact `str` (`json` converts numbers, booleans and None, and rejects the rest).
fn write_dict(out: &mut Vec<u8>, dict: &Bound<'_, PyDict>, level: usize) -> PyResult<bool> {
    if dict.is_empty() {
        out.extend_from_slice(b"{}");
        return Ok(true);
    }
    out.push(b'{');
    for (index, (key, value)) in dict.iter().enumerate() {
        let Ok(key) = key.cast_exact::<PyString>() else {
            return Ok(false);
        };
        let Ok(key) = key.to_str() else {
            return Ok(false);
        };
        if index > 0 {
            out.push(b',');
        }
        new_line(out, level + 1);
        write_string(out, key);
        out.extend_from_slice(b": ");
        if !write_value(out, &value, level + 1)? {
            return Ok(false);
        }
    }
    new_line(out, level);
    out.push(b'}');
    Ok(true)
}

fn new_line(out: &mut Vec<u8>, level: usize) {
    out.push(b'\n');
    out.resize(out.len() + 2 * level, b' ');
}

/// A JSON string as `json`'s `ensure_ascii` encoder writes it.
fn write_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let plain = |byte: &u8| matches!(byte, 0x20..=0x7e) && *byte != b'"' && *byte != b'\\';
    if text.as_bytes().iter().all(plain) {
        // The common case: nothing to escape.
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    for unit in text.encode_utf16() {
        match unit {
            0x22 => out.extend_from_slice(b"\\\""),
            0x5c => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0d => out.extend_from_slice(b"\\r"),
            0x09 => out.extend_from_slice(b"\\t"),
            // Printable ASCII: the unit is the byte.
            0x20..=0x7e => out.push(unit as u8),
            _ => {
                out.extend_from_slice(b"\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[usize::from((unit >> shift) & 0xf)]);
                }
            }
        }
    }
    out.push(b'"');
}
