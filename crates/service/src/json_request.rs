//! Reading an authenticated JSON request on the intake listener (the lookup's decision route, CRM decisions): the
//! order of checks is intake's — headers authenticated before any body is read, a declared length over the limit
//! refused at once, no compressed or non-JSON bodies, the body read within the limit and the body timeout, then its
//! signature verified. Every refusal is a status, a stable code and a sentence for the error envelope.

use crate::intake::{read_body, BodyError};
use crate::intake_auth::IntakeAuth;
use axum::body::{Body, Bytes};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use std::time::Duration;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refused {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

/// The request's parts and its whole body, authenticated by `auth`.
pub async fn read(
    auth: &IntakeAuth,
    request: axum::extract::Request,
    max_bytes: usize,
    body_timeout: Duration,
    what: &str,
) -> Result<(Parts, Bytes), Refused> {
    let (parts, body): (Parts, Body) = request.into_parts();
    let headers = &parts.headers;
    let now_unix = jiff::Timestamp::now().as_second();
    auth.check_headers(headers, now_unix).map_err(|r| Refused::new(r.status, r.code, r.message))?;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let too_large = |size: String| {
        let message = format!("body of {size} bytes exceeds the limit of {max_bytes} bytes");
        Refused::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    };
    if let Some(declared) = declared.filter(|d| *d > max_bytes as u64) {
        return Err(too_large(declared.to_string()));
    }
    if headers.get(header::CONTENT_ENCODING).is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity")) {
        let message = format!("compressed bodies are not accepted; send {what} uncompressed");
        return Err(Refused::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding", message));
    }
    let json_type = |v: &HeaderValue| {
        v.to_str()
            .ok()
            .and_then(|t| t.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    };
    if headers.get(header::CONTENT_TYPE).is_some_and(|v| !json_type(v)) {
        let message = format!("{what} must be sent as Content-Type: application/json");
        return Err(Refused::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message));
    }
    let body = match read_body(body, declared, max_bytes, body_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return Err(too_large(format!("more than {max_bytes}"))),
        Err(BodyError::Timeout) => {
            let message = format!("the body did not arrive within {} ms", body_timeout.as_millis());
            return Err(Refused::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message));
        }
        Err(BodyError::Broken) => {
            return Err(Refused::new(StatusCode::BAD_REQUEST, "bad_body", "the body could not be read to its end"))
        }
    };
    auth.check_body(&parts.headers, &body, now_unix).map_err(|r| Refused::new(r.status, r.code, r.message))?;
    Ok((parts, body))
}
