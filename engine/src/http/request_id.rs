//! Request ids: a client's `x-request-id` is kept when it is sane, otherwise one is made.
//!
//! An id that is not sane (empty, longer than [`MAX_LEN`], or with a byte that is not visible
//! ASCII) is replaced, never refused: mosec 0.9.8 ignores the header, so a client that sends a
//! long tracing id to it must keep being served. The response's `x-request-id` is the id used,
//! and the OpenAPI document says so (`mosec/openapi.py` reads `MAX_LEN` from here).

use bytes::Bytes;
use http::HeaderMap;

/// Header carrying the request id both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest client id we keep; a longer one is replaced (it also travels on the worker link).
pub const MAX_LEN: usize = 128;

/// The request's id: the client's when it is sane (visible ASCII, at most 128 bytes), a new
/// random one otherwise.
pub fn request_id(headers: &HeaderMap) -> Bytes {
    if let Some(value) = headers.get(REQUEST_ID) {
        let raw = value.as_bytes();
        if !raw.is_empty() && raw.len() <= MAX_LEN && raw.iter().all(|b| b.is_ascii_graphic()) {
            return Bytes::copy_from_slice(raw);
        }
    }
    Bytes::from(uuid::Uuid::new_v4().simple().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn keeps_sane_ids_and_makes_the_rest() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), Bytes::from_static(b"abc-123"));
        headers.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        let made = request_id(&headers);
        assert_eq!(made.len(), 32);
        assert_ne!(made, request_id(&HeaderMap::new()), "made ids are unique");
        let longest = "i".repeat(MAX_LEN);
        headers.insert(REQUEST_ID, HeaderValue::from_str(&longest).unwrap());
        assert_eq!(request_id(&headers), Bytes::from(longest.clone()));
        headers.insert(REQUEST_ID, HeaderValue::from_str(&format!("{longest}i")).unwrap());
        assert_eq!(request_id(&headers).len(), 32, "one byte too long: replaced");
    }
}
