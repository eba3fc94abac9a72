//! Following the framing of HTTP/1 requests as their bytes arrive, to find the heads hyper
//! accepts but a server behind a proxy must refuse.
//!
//! hyper answers a request carrying both `Content-Length` and `Transfer-Encoding: chunked` by
//! the chunked framing, drops `Content-Length` before the service sees it, and closes the
//! connection after the response. That is one of the two choices RFC 9112 §6.3 allows; the
//! other, refusing it with 400, is the safe one behind a proxy that may have framed it by
//! `Content-Length` (request smuggling). The service cannot tell such a request from a plain
//! chunked one, so [`Framing`] reads the same bytes hyper reads (through
//! `connection::Watched`), parses each head with `httparse` (hyper's parser), skips bodies
//! by the framing hyper uses, and records the index of the first head carrying both headers.
//!
//! It fails open: anything it does not follow (HTTP/2, a head hyper itself refuses, an
//! upgrade, a malformed chunk) turns it off for the connection, leaving hyper's own handling,
//! which is safe: hyper refuses what does not parse and closes after an ambiguous request.
//! Conflicting `Content-Length` values are recorded too, though hyper refuses them first.

use std::time::Instant;

/// Longest request head followed; a longer one is hyper's to refuse (its own limit is larger).
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line or trailer section followed.
const MAX_LINE: usize = 8 * 1024;
/// Most header lines in a head followed (hyper's default limit is 100).
const MAX_HEADERS: usize = 128;

/// Where the next byte of the connection belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A request head (or the blank lines before one).
    Head,
    /// This many more bytes of a `Content-Length` body.
    Body(u64),
    /// A chunk-size line.
    ChunkSize,
    /// This many more bytes of chunk data and its CRLF.
    ChunkData(u64),
    /// The trailer section after the last chunk.
    Trailers,
    /// Not followed any more (see the module docs).
    Off,
}

/// What a completed head says about the body after it.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    Sized(u64),
    Chunked,
    /// Both framing headers, or conflicting lengths.
    Ambiguous,
    /// Something hyper will refuse or switch protocols on.
    Unfollowed,
}

/// The framing of one connection's request stream.
#[derive(Debug)]
pub struct Framing {
    state: State,
    /// Bytes of an incomplete head, chunk-size line or trailer section.
    pending: Vec<u8>,
    /// Heads completed so far: the index of the next one.
    heads: u64,
    /// The index of the first ambiguous head.
    ambiguous: Option<u64>,
    /// When the first head completed (or following stopped), for the header deadline.
    first_head_at: Option<Instant>,
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            state: State::Head,
            pending: Vec::new(),
            heads: 0,
            ambiguous: None,
            first_head_at: None,
        }
    }
}

impl Framing {
    /// The index (0 for the connection's first request) of the first ambiguous head seen.
    pub fn ambiguous(&self) -> Option<u64> {
        self.ambiguous
    }

    /// Whether the bytes are no longer followed (the rest of the connection is hyper's alone).
    pub fn is_off(&self) -> bool {
        self.state == State::Off
    }

    /// Whether the first request head is complete, or the connection is not one followed
    /// (HTTP/2 or a head hyper refuses): the header deadline of the first request is over.
    pub fn first_head_done(&self) -> bool {
        self.first_head_at.is_some()
    }

    /// Follows `data`, the next bytes the client sent.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            data = match self.state {
                State::Off => return,
                State::Body(left) | State::ChunkData(left) => {
                    let taken = left.min(data.len() as u64);
                    let left = left - taken;
                    self.state = match self.state {
                        State::Body(_) if left == 0 => State::Head,
                        State::Body(_) => State::Body(left),
                        _ if left == 0 => State::ChunkSize,
                        _ => State::ChunkData(left),
                    };
                    // `taken` is at most `data.len()`, so it fits a usize.
                    &data[usize::try_from(taken).unwrap_or(data.len())..]
                }
                State::Head => self.pend(data, MAX_HEAD, Self::head),
                State::ChunkSize => self.pend(data, MAX_LINE, Self::chunk_size),
                State::Trailers => self.pend(data, MAX_LINE, Self::trailers),
            };
        }
    }

    /// Appends `data` to the pending bytes and tries `complete` on them; returns what is
    /// left of `data` after the part `complete` consumed.
    fn pend<'a>(
        &mut self,
        data: &'a [u8],
        limit: usize,
        complete: fn(&mut Self, &[u8]) -> Option<usize>,
    ) -> &'a [u8] {
        let before = self.pending.len();
        self.pending.extend_from_slice(data);
        let pending = std::mem::take(&mut self.pending);
        match complete(self, &pending) {
            Some(used) if used > before => &data[(used - before).min(data.len())..],
            Some(_) => &data[data.len()..], // cannot happen: what was pending had no end
            None => {
                if self.state != State::Off && pending.len() > limit {
                    self.off();
                }
                if self.state != State::Off {
                    self.pending = pending;
                }
                &data[data.len()..]
            }
        }
    }

    fn off(&mut self) {
        self.state = State::Off;
        self.pending = Vec::new();
        self.first_head_at.get_or_insert_with(Instant::now);
    }

    /// Parses a head: the bytes used when complete, `None` while more is needed.
    fn head(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let used = match request.parse(bytes) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return None,
            Err(_) => {
                self.off();
                return None;
            }
        };
        let framing = body_of(&request);
        let index = self.heads;
        self.heads += 1;
        self.first_head_at.get_or_insert_with(Instant::now);
        self.state = match framing {
            Head::Sized(0) => State::Head,
            Head::Sized(length) => State::Body(length),
            Head::Chunked => State::ChunkSize,
            Head::Ambiguous => {
                self.ambiguous.get_or_insert(index);
                State::Off
            }
            Head::Unfollowed => State::Off,
        };
        if self.state == State::Off {
            self.off();
        }
        Some(used)
    }

    fn chunk_size(&mut self, bytes: &[u8]) -> Option<usize> {
        match httparse::parse_chunk_size(bytes) {
            Ok(httparse::Status::Complete((used, 0))) => {
                self.state = State::Trailers;
                Some(used)
            }
            Ok(httparse::Status::Complete((used, size))) => {
                // The data, then its CRLF (which hyper insists on).
                self.state = State::ChunkData(size.saturating_add(2));
                Some(used)
            }
            Ok(httparse::Status::Partial) => None,
            Err(_) => {
                self.off();
                None
            }
        }
    }

    /// The trailer section: field lines, then an empty line.
    fn trailers(&mut self, bytes: &[u8]) -> Option<usize> {
        let end = if bytes.starts_with(b"\r\n") {
            Some(2)
        } else {
            bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
        };
        if end.is_some() {
            self.state = State::Head;
        }
        end
    }
}

/// The body framing a parsed head declares, by hyper's rules (RFC 9112 §6.3).
fn body_of(request: &httparse::Request<'_, '_>) -> Head {
    if request.method == Some("CONNECT") {
        return Head::Unfollowed;
    }
    let (mut length, mut lengths_differ, mut chunked) = (None, false, None);
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let Ok(text) = std::str::from_utf8(header.value) else {
                return Head::Unfollowed;
            };
            for value in text.split(',') {
                let Ok(value) = value.trim().parse::<u64>() else {
                    return Head::Unfollowed;
                };
                lengths_differ |= length.is_some_and(|seen| seen != value);
                length = Some(value);
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only when it is the last coding (hyper refuses anything else).
            let last = header.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            return Head::Unfollowed;
        }
    }
    match (length, chunked) {
        (Some(_), Some(_)) => Head::Ambiguous,
        (_, Some(true)) => Head::Chunked,
        (_, Some(false)) => Head::Unfollowed,
        (Some(_), None) if lengths_differ => Head::Ambiguous,
        (Some(length), None) => Head::Sized(length),
        (None, None) => Head::Sized(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(parts: &[&[u8]]) -> Framing {
        let mut framing = Framing::default();
        for part in parts {
            framing.feed(part);
        }
        framing
    }

    const CHUNKED: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        3;x=1\r\nabc\r\n0\r\nTrailer: 1\r\n\r\n";
    const SIZED: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";

    #[test]
    fn bodies_are_skipped_across_pipelined_requests() {
        let both = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        let stream = [CHUNKED, SIZED, CHUNKED, b"\r\nGET / HTTP/1.1\r\n\r\n", both].concat();
        // Whole, and one byte at a time (a trickling client): the same answer.
        assert_eq!(follow(&[&stream]).ambiguous(), Some(4));
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let framing = follow(&bytes);
        assert_eq!(framing.ambiguous(), Some(4));
        assert!(framing.first_head_done());
    }

    #[test]
    fn a_body_that_looks_like_a_head_is_a_body() {
        let inner = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", inner.len());
        let framing = follow(&[head.as_bytes(), inner, SIZED]);
        assert_eq!(framing.ambiguous(), None);
        assert_eq!(framing.heads, 2);
    }

    #[test]
    fn ambiguous_heads_in_every_order() {
        for head in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n",
        ] {
            assert_eq!(follow(&[head]).ambiguous(), Some(0), "{}", String::from_utf8_lossy(head));
        }
        let same = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(follow(&[same]).ambiguous(), None);
    }

    #[test]
    fn what_is_not_followed_turns_it_off() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let framing = follow(&[preface]);
        assert_eq!(framing.state, State::Off);
        assert!(framing.first_head_done(), "the header deadline ends for HTTP/2");
        let framing = follow(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]);
        assert_eq!(framing.state, State::Off);
        let framing = follow(&[&vec![b'a'; MAX_HEAD + 10]]);
        assert_eq!(framing.state, State::Off);
        assert!(!follow(&[b"POST / HTTP/1.1\r\nX: 1\r\n"]).first_head_done());
    }
}
