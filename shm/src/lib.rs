//! The mmap arena store (filled in by the data-plane issue).
//!
//! # Layout
//! Empty for now: the engine core carries payloads inline on the worker link.
