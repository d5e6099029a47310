//! HTTP plumbing shared by connectors: size-limited bodies and header helpers.
//!
//! Platform responses are untrusted input. A body larger than [`MAX_RESPONSE_BYTES`] is refused while it streams
//! in (not after buffering it), and request bodies above [`MAX_REQUEST_BYTES`] are never sent.

use reqwest::header::HeaderMap;

/// Largest response body accepted from a platform.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Largest request body sent to a platform.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the response body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the response body could not be read")]
    Read(#[source] reqwest::Error),
}

/// Reads a response body, refusing more than `limit` bytes.
pub async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Read)? {
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// A header as a trimmed string, if present and valid.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty())
}

/// A header as an unsigned integer.
pub fn header_u32(headers: &HeaderMap, name: &str) -> Option<u32> {
    header_str(headers, name)?.parse().ok()
}
