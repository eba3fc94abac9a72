//! Building responses: bodies, content types, the `server` header and status mapping.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, SERVER};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// Body type of every response.
pub type Body = BoxBody<Bytes, Infallible>;

/// Content type of every engine-made or error response.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The body of a 503 while the server drains, mosec's words.
pub const SHUTTING_DOWN: &str = "gracefully shutting down";

/// `server` header value: `mosec/<version>`.
pub const SERVER_NAME: &str = concat!("mosec/", env!("CARGO_PKG_VERSION"));

/// Maps a status a worker reported to the HTTP status sent to the client.
///
/// Workers report 200 or an error status; anything that is not a valid success or error code
/// (a bug in a custom worker loop) becomes 500 rather than a confusing response.
pub fn status_from_worker(status: u16) -> StatusCode {
    match StatusCode::from_u16(status) {
        Ok(code) if code == StatusCode::OK || code.is_client_error() || code.is_server_error() => {
            code
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A response with the given status, content type and body.
pub fn with_body(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

/// A short plain-text response, used for every error.
pub fn text(status: StatusCode, message: impl Into<Bytes>) -> Response<Body> {
    with_body(status, TEXT_PLAIN, message)
}

/// Adds the headers every response carries.
pub fn finish(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(SERVER, HeaderValue::from_static(SERVER_NAME));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_statuses_map_to_http() {
        assert_eq!(status_from_worker(200), StatusCode::OK);
        assert_eq!(status_from_worker(400), StatusCode::BAD_REQUEST);
        assert_eq!(status_from_worker(408), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(status_from_worker(422), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status_from_worker(500), StatusCode::INTERNAL_SERVER_ERROR);
        // Not an error and not plain success: a worker bug, reported as 500.
        for odd in [0, 1, 204, 302, 700, u16::MAX] {
            assert_eq!(status_from_worker(odd), StatusCode::INTERNAL_SERVER_ERROR, "{odd}");
        }
    }

    #[test]
    fn error_responses_are_text_with_the_server_header() {
        let response = finish(text(StatusCode::NOT_FOUND, "not found"));
        assert_eq!(response.headers()[CONTENT_TYPE], TEXT_PLAIN);
        assert!(response.headers()[SERVER].to_str().unwrap().starts_with("mosec/"));
    }
}
