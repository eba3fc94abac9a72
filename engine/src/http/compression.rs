//! Request and response compression (`--compression`): gzip and zstd.

use std::io::Read;

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING};
use http::HeaderMap;

/// A content coding we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// RFC 1952 gzip.
    Gzip,
    /// RFC 8878 Zstandard.
    Zstd,
}

impl Coding {
    /// The header token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Zstd => "zstd",
        }
    }
}

/// Why a request body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A `content-encoding` we do not speak (or compression is off): 415.
    Unsupported(String),
    /// The decoded body exceeds the size limit: 413.
    TooLarge,
    /// The body is not valid for its coding: 400.
    Corrupt(String),
}

/// The request's `content-encoding`, if it is not identity.
pub fn request_coding(headers: &HeaderMap) -> Result<Option<Coding>, DecodeError> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(None);
    };
    match value.to_str().map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Ok("" | "identity") => Ok(None),
        Ok("gzip" | "x-gzip") => Ok(Some(Coding::Gzip)),
        Ok("zstd") => Ok(Some(Coding::Zstd)),
        Ok(other) => Err(DecodeError::Unsupported(other.to_owned())),
        Err(_) => Err(DecodeError::Unsupported("<non-ASCII>".to_owned())),
    }
}

/// Decodes `body`, refusing output beyond `limit` bytes (a small bomb must not fill memory).
pub fn decode(coding: Coding, body: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    let corrupt = |err: std::io::Error| DecodeError::Corrupt(err.to_string());
    let bound = limit as u64 + 1;
    match coding {
        Coding::Gzip => flate2::read::MultiGzDecoder::new(body)
            .take(bound)
            .read_to_end(&mut out)
            .map_err(corrupt)?,
        Coding::Zstd => zstd::stream::read::Decoder::new(body)
            .map_err(corrupt)?
            .take(bound)
            .read_to_end(&mut out)
            .map_err(corrupt)?,
    };
    if out.len() > limit {
        return Err(DecodeError::TooLarge);
    }
    Ok(out.into())
}

/// The coding the client prefers among ours, from `accept-encoding` (zstd wins ties).
pub fn preferred(headers: &HeaderMap) -> Option<Coding> {
    let accept = headers.get(ACCEPT_ENCODING)?.to_str().ok()?;
    let mut best: Option<(Coding, f32)> = None;
    for part in accept.split(',') {
        let mut fields = part.split(';');
        let token = fields.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = fields
            .find_map(|f| f.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()))
            .unwrap_or(1.0);
        let coding = match token.as_str() {
            "zstd" => Coding::Zstd,
            "gzip" | "x-gzip" => Coding::Gzip,
            _ => continue,
        };
        let better = match best {
            None => true,
            Some((held, q)) => {
                quality > q || (quality == q && coding == Coding::Zstd && held != Coding::Zstd)
            }
        };
        if quality > 0.0 && better {
            best = Some((coding, quality));
        }
    }
    best.map(|(coding, _)| coding)
}

/// Compresses a response body.
pub fn encode(coding: Coding, body: &[u8]) -> std::io::Result<Bytes> {
    match coding {
        Coding::Gzip => {
            let mut encoder = flate2::read::GzEncoder::new(body, flate2::Compression::fast());
            let mut out = Vec::new();
            encoder.read_to_end(&mut out)?;
            Ok(out.into())
        }
        Coding::Zstd => Ok(zstd::bulk::compress(body, 3)?.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: http::header::HeaderName, value: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, HeaderValue::from_static(value));
        map
    }

    #[test]
    fn round_trips_both_codings() {
        let body = b"tensor ".repeat(1000);
        for coding in [Coding::Gzip, Coding::Zstd] {
            let packed = encode(coding, &body).unwrap();
            assert!(packed.len() < body.len());
            assert_eq!(decode(coding, &packed, body.len()).unwrap(), Bytes::from(body.clone()));
            assert_eq!(decode(coding, &packed, body.len() - 1), Err(DecodeError::TooLarge));
        }
        assert!(matches!(decode(Coding::Gzip, b"not gzip", 100), Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn negotiates_codings() {
        assert_eq!(preferred(&headers(ACCEPT_ENCODING, "gzip, zstd")), Some(Coding::Zstd));
        assert_eq!(preferred(&headers(ACCEPT_ENCODING, "zstd;q=0.5, gzip")), Some(Coding::Gzip));
        assert_eq!(preferred(&headers(ACCEPT_ENCODING, "br, gzip;q=0")), None);
        assert_eq!(preferred(&HeaderMap::new()), None);
        assert_eq!(request_coding(&headers(CONTENT_ENCODING, "gzip")), Ok(Some(Coding::Gzip)));
        assert_eq!(request_coding(&headers(CONTENT_ENCODING, "identity")), Ok(None));
        assert_eq!(
            request_coding(&headers(CONTENT_ENCODING, "br")),
            Err(DecodeError::Unsupported("br".into()))
        );
    }
}
