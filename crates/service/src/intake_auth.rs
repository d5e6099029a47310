//! Who may post to `/intake/{connection}`: a shared API key in a header, or Standard Webhooks signatures.
//!
//! # API key (`auth = "api_key"`, the default)
//!
//! What an EventBridge API destination sends: a fixed header with a fixed value, compared in constant time.
//!
//! # Standard Webhooks (`auth = "standard_webhooks"`)
//!
//! Per <https://www.standardwebhooks.com/>: the sender signs `{webhook-id}.{webhook-timestamp}.{body}` with
//! HMAC-SHA256 under the shared key (configured as `whsec_<base64>`), and sends the base64 signature as `v1,<sig>` in
//! `webhook-signature` — several space-separated signatures are allowed (key rotation), and one that verifies is
//! enough; entries of other versions (`v1a,…`) are skipped. Signatures are checked with `Mac::verify_slice`, which
//! compares in constant time. `webhook-timestamp` (unix seconds) must be within [`TOLERANCE_SECS`] of the wall
//! clock in either direction, so a captured request stops being accepted after five minutes.
//!
//! The wall clock, not the service's injected clock: the timestamp is the sender's real time, and embedded runs
//! accelerate the service's clock.
//!
//! **Replays.** A replayed request (same `webhook-id`, same body) passes this check and is then a no-op: its events
//! carry the dedupe keys already stored, so intake acknowledges them as duplicates. A request that reuses a
//! `webhook-id` with a *different* body is refused (409): the ids of verified requests are remembered with a digest
//! of their body for as long as their timestamp is within the tolerance — after that the timestamp check refuses
//! them anyway. The memory is per process and bounded ([`MAX_REMEMBERED_IDS`], oldest forgotten first); after a
//! restart, or on another replica, a different body under a known id within those five minutes is not recognized,
//! and is handled like any other event (deduped by its own keys).
//!
//! Every refusal says what was wrong (missing header, malformed header, expired timestamp, no matching signature)
//! and never echoes a signature or the key.

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use wrapup_config::SigningSecret;
use wrapup_core::Secret;

/// How far `webhook-timestamp` may be from the wall clock, either way (the specification's recommendation).
pub const TOLERANCE_SECS: i64 = 5 * 60;
/// How many verified `webhook-id`s are remembered for replay detection.
pub const MAX_REMEMBERED_IDS: usize = 100_000;
/// Longest `webhook-id` accepted.
pub const MAX_ID_CHARS: usize = 256;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How one connection's intake authenticates requests.
#[derive(Debug, Clone)]
pub enum IntakeAuth {
    ApiKey { header: String, key: Secret },
    StandardWebhooks(Arc<StandardWebhooks>),
}

/// Why a request was refused, ready for the API's error envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The `reason` label of `wrapup_intake_rejected_total`.
    pub reason: &'static str,
}

impl IntakeAuth {
    /// Checks one request, headers then body. `now_unix` is the wall clock in unix seconds.
    pub fn check(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> Result<(), Refusal> {
        self.check_headers(headers, now_unix)?;
        self.check_body(headers, body, now_unix)
    }

    /// Everything that can be checked before the body is read: the API key entirely; for Standard Webhooks, that
    /// the three headers are there and well-formed and the timestamp is within the tolerance. Intake reads a body
    /// only after this passed, so an unauthenticated sender cannot make the service read (or `100 Continue`) one.
    pub fn check_headers(&self, headers: &HeaderMap, now_unix: i64) -> Result<(), Refusal> {
        match self {
            IntakeAuth::ApiKey { header, key } => {
                let presented = headers.get(header.as_str()).map(|v| v.as_bytes()).unwrap_or_default();
                if presented.is_empty() || !bool::from(presented.ct_eq(key.expose().as_bytes())) {
                    return Err(Refusal {
                        status: StatusCode::UNAUTHORIZED,
                        code: "unauthenticated",
                        message: format!("missing or wrong API key in header {header}"),
                        reason: "auth",
                    });
                }
                Ok(())
            }
            IntakeAuth::StandardWebhooks(_) => {
                webhook_headers(&webhook_request(headers, b""), now_unix).map(|_| ()).map_err(webhook_refusal)
            }
        }
    }

    /// What needs the body: a Standard Webhooks signature (and the replay check). Nothing for an API key.
    pub fn check_body(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> Result<(), Refusal> {
        match self {
            IntakeAuth::ApiKey { .. } => Ok(()),
            IntakeAuth::StandardWebhooks(hooks) => {
                hooks.check(&webhook_request(headers, body), now_unix).map(|_| ()).map_err(webhook_refusal)
            }
        }
    }
}

fn webhook_request<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> WebhookRequest<'a> {
    let get = |name: &str| headers.get(name).map(|v| v.as_bytes());
    WebhookRequest { id: get(HEADER_ID), timestamp: get(HEADER_TIMESTAMP), signature: get(HEADER_SIGNATURE), body }
}

fn webhook_refusal(e: WebhookError) -> Refusal {
    let replayed = matches!(e, WebhookError::Replayed { .. });
    Refusal {
        status: if replayed { StatusCode::CONFLICT } else { StatusCode::UNAUTHORIZED },
        code: if replayed { "replayed_webhook_id" } else { "unauthenticated" },
        message: e.to_string(),
        reason: if replayed { "replay" } else { "auth" },
    }
}

/// The parts of a request that Standard Webhooks looks at, as raw header bytes.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub id: Option<&'a [u8]>,
    pub timestamp: Option<&'a [u8]>,
    pub signature: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// Why a Standard Webhooks request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing header {0}: requests to this intake must be signed (Standard Webhooks)")]
    MissingHeader(&'static str),
    #[error("header {header} is malformed: {reason}")]
    Malformed { header: &'static str, reason: &'static str },
    #[error(
        "webhook-timestamp is {skew_secs} s {direction} the server's clock, more than the {TOLERANCE_SECS} s accepted \
         (a replayed request or a sender with a wrong clock)"
    )]
    OutsideTolerance { skew_secs: i64, direction: &'static str },
    #[error(
        "no v1 signature in webhook-signature matches the request (wrong signing secret, or the body was altered)"
    )]
    BadSignature,
    #[error("webhook-id {id} was already delivered with a different body; a new message needs a new id")]
    Replayed { id: String },
}

/// A verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub id: String,
    pub timestamp: i64,
}

/// Verifies one request against `key` at `now_unix`: headers present and well-formed, timestamp within the
/// tolerance, and at least one `v1` signature equal (in constant time) to the HMAC of the signed content.
pub fn verify(key: &[u8], request: &WebhookRequest<'_>, now_unix: i64) -> Result<Verified, WebhookError> {
    let WebhookHeaders { id, timestamp, timestamp_value, signature } = webhook_headers(request, now_unix)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id);
    mac.update(b".");
    mac.update(timestamp);
    mac.update(b".");
    mac.update(request.body);
    for entry in v1_signatures(signature) {
        let Ok(candidate) = base64_decode(entry) else { continue };
        if mac.clone().verify_slice(&candidate).is_ok() {
            // Visible ASCII (checked above).
            let id = String::from_utf8_lossy(id).into_owned();
            return Ok(Verified { id, timestamp: timestamp_value });
        }
    }
    Err(WebhookError::BadSignature)
}

/// The three headers of a request, checked for presence and form, with the timestamp within the tolerance.
struct WebhookHeaders<'a> {
    id: &'a [u8],
    timestamp: &'a [u8],
    timestamp_value: i64,
    signature: &'a [u8],
}

/// The `v1` entries of a `webhook-signature` header, without their prefix. Bytes, not text: an entry this service
/// cannot read (another version, non-ASCII) must not hide a valid one.
fn v1_signatures(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    header.split(|b| *b == b' ').filter_map(|e| e.strip_prefix(b"v1,"))
}

/// What [`verify`] checks before it computes anything: every header present and well-formed, the timestamp within
/// [`TOLERANCE_SECS`], at least one `v1` signature.
fn webhook_headers<'a>(request: &WebhookRequest<'a>, now_unix: i64) -> Result<WebhookHeaders<'a>, WebhookError> {
    let id = request.id.ok_or(WebhookError::MissingHeader(HEADER_ID))?;
    let timestamp = request.timestamp.ok_or(WebhookError::MissingHeader(HEADER_TIMESTAMP))?;
    let signature = request.signature.ok_or(WebhookError::MissingHeader(HEADER_SIGNATURE))?;
    if id.is_empty() || id.len() > MAX_ID_CHARS || !id.iter().all(|b| b.is_ascii_graphic()) {
        return Err(WebhookError::Malformed {
            header: HEADER_ID,
            reason: "it must be 1 to 256 visible ASCII characters",
        });
    }
    let timestamp_value = std::str::from_utf8(timestamp)
        .ok()
        .filter(|t| !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or(WebhookError::Malformed { header: HEADER_TIMESTAMP, reason: "it must be unix seconds" })?;
    let skew = timestamp_value - now_unix;
    if skew.abs() > TOLERANCE_SECS {
        let direction = if skew > 0 { "ahead of" } else { "behind" };
        return Err(WebhookError::OutsideTolerance { skew_secs: skew.abs(), direction });
    }
    if v1_signatures(signature).next().is_none() {
        return Err(WebhookError::Malformed {
            header: HEADER_SIGNATURE,
            reason: "it holds no `v1,<base64>` signature",
        });
    }
    Ok(WebhookHeaders { id, timestamp, timestamp_value, signature })
}

fn base64_decode(text: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text)
}

/// The signature of `body` as a sender computes it: `v1,<base64>` (for tests, the fuzz target and tools).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// A Standard Webhooks intake: the key, and the ids of recently verified requests.
pub struct StandardWebhooks {
    key: SigningSecret,
    seen: Mutex<SeenIds>,
}

impl fmt::Debug for StandardWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhooks").field("key", &self.key).finish_non_exhaustive()
    }
}

impl StandardWebhooks {
    pub fn new(key: SigningSecret) -> Self {
        Self { key, seen: Mutex::new(SeenIds::default()) }
    }

    /// [`verify`], then the replay check: a known id with another body is refused.
    pub fn check(&self, request: &WebhookRequest<'_>, now_unix: i64) -> Result<Verified, WebhookError> {
        let verified = verify(self.key.key(), request, now_unix)?;
        let digest: [u8; 32] = Sha256::digest(request.body).into();
        self.seen.lock().remember(&verified, digest, now_unix)?;
        Ok(verified)
    }
}

/// Verified ids with the digest of their body, forgotten once their timestamp is outside the tolerance.
#[derive(Default)]
struct SeenIds {
    by_id: HashMap<String, (i64, [u8; 32])>,
    by_time: BTreeSet<(i64, String)>,
}

impl SeenIds {
    fn remember(&mut self, verified: &Verified, digest: [u8; 32], now_unix: i64) -> Result<(), WebhookError> {
        while let Some((ts, id)) = self.by_time.first().cloned() {
            if ts >= now_unix - TOLERANCE_SECS && self.by_time.len() < MAX_REMEMBERED_IDS {
                break;
            }
            self.by_time.pop_first();
            self.by_id.remove(&id);
        }
        match self.by_id.get(&verified.id) {
            Some((_, known)) if *known == digest => Ok(()),
            Some(_) => Err(WebhookError::Replayed { id: verified.id.clone() }),
            None => {
                self.by_id.insert(verified.id.clone(), (verified.timestamp, digest));
                self.by_time.insert((verified.timestamp, verified.id.clone()));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_767_225_600;

    fn key() -> SigningSecret {
        SigningSecret::parse(SECRET).unwrap()
    }

    fn request<'a>(id: &'a str, ts: &'a str, sig: &'a str, body: &'a [u8]) -> WebhookRequest<'a> {
        WebhookRequest {
            id: Some(id.as_bytes()),
            timestamp: Some(ts.as_bytes()),
            signature: Some(sig.as_bytes()),
            body,
        }
    }

    #[test]
    fn the_specification_example_verifies() {
        // The example of the Standard Webhooks reference libraries.
        let body = br#"{"test": 2432232314}"#;
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(sign(key().key(), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body), sig);
        let verified =
            verify(key().key(), &request("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", sig, body), 1614265330);
        assert_eq!(verified.unwrap().id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
    }

    #[test]
    fn a_valid_signature_passes_and_a_wrong_secret_or_altered_body_does_not() {
        let body = b"{\"a\":1}";
        let sig = sign(key().key(), "msg_1", NOW, body);
        let ts = NOW.to_string();
        assert!(verify(key().key(), &request("msg_1", &ts, &sig, body), NOW).is_ok());

        let other = SigningSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let forged = sign(other.key(), "msg_1", NOW, body);
        assert_eq!(verify(key().key(), &request("msg_1", &ts, &forged, body), NOW), Err(WebhookError::BadSignature));
        assert_eq!(
            verify(key().key(), &request("msg_1", &ts, &sig, b"{\"a\":2}"), NOW),
            Err(WebhookError::BadSignature)
        );
        // The id and the timestamp are signed too.
        assert_eq!(verify(key().key(), &request("msg_2", &ts, &sig, body), NOW), Err(WebhookError::BadSignature));
        let ts2 = (NOW + 1).to_string();
        assert_eq!(verify(key().key(), &request("msg_1", &ts2, &sig, body), NOW), Err(WebhookError::BadSignature));
    }

    #[test]
    fn timestamps_outside_five_minutes_either_way_are_refused() {
        let body = b"{}";
        for (offset, ok) in [(-300, true), (300, true), (-301, false), (301, false), (-86_400, false), (86_400, false)]
        {
            let ts = NOW + offset;
            let sig = sign(key().key(), "m", ts, body);
            let result = verify(key().key(), &request("m", &ts.to_string(), &sig, body), NOW);
            assert_eq!(result.is_ok(), ok, "offset {offset}: {result:?}");
            if !ok {
                assert!(matches!(result, Err(WebhookError::OutsideTolerance { .. })), "{result:?}");
            }
        }
    }

    #[test]
    fn missing_and_malformed_headers_are_refused_with_the_header_named() {
        let body = b"{}";
        let sig = sign(key().key(), "m", NOW, body);
        let ts = NOW.to_string();
        let full = request("m", &ts, &sig, body);
        for (req, header) in [
            (WebhookRequest { id: None, ..full }, HEADER_ID),
            (WebhookRequest { timestamp: None, ..full }, HEADER_TIMESTAMP),
            (WebhookRequest { signature: None, ..full }, HEADER_SIGNATURE),
        ] {
            let e = verify(key().key(), &req, NOW).unwrap_err();
            assert_eq!(e, WebhookError::MissingHeader(header));
            assert!(e.to_string().contains(header));
        }
        for (req, header) in [
            (request("", &ts, &sig, body), HEADER_ID),
            (request("m m", &ts, &sig, body), HEADER_ID),
            (request("m", "-5", &sig, body), HEADER_TIMESTAMP),
            (request("m", "17e8", &sig, body), HEADER_TIMESTAMP),
            (request("m", "99999999999999999999", &sig, body), HEADER_TIMESTAMP),
            (request("m", &ts, "", body), HEADER_SIGNATURE),
            (request("m", &ts, "v2,abc", body), HEADER_SIGNATURE),
        ] {
            match verify(key().key(), &req, NOW) {
                Err(WebhookError::Malformed { header: h, .. }) => assert_eq!(h, header),
                other => panic!("{req:?}: {other:?}"),
            }
        }
        // A v1 entry that is not base64 is a signature that does not match.
        assert_eq!(verify(key().key(), &request("m", &ts, "v1,***", body), NOW), Err(WebhookError::BadSignature));
    }

    #[test]
    fn one_valid_signature_among_several_is_enough() {
        let body = b"{}";
        let good = sign(key().key(), "m", NOW, body);
        let other = SigningSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let stale = sign(other.key(), "m", NOW, body);
        let ts = NOW.to_string();
        for header in
            [format!("{stale} {good}"), format!("{good} {stale}"), format!("v1a,c2lnbmF0dXJl  v1,***  {good}")]
        {
            assert!(verify(key().key(), &request("m", &ts, &header, body), NOW).is_ok(), "{header}");
        }
        // An entry that is not even text does not hide the valid one.
        let mut bytes = b"v1,\xff\xfe ".to_vec();
        bytes.extend(good.as_bytes());
        let req = WebhookRequest { signature: Some(&bytes), ..request("m", &ts, &good, body) };
        assert!(verify(key().key(), &req, NOW).is_ok());
        assert_eq!(
            verify(key().key(), &request("m", &ts, &format!("{stale} {stale}"), body), NOW),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn a_replayed_id_passes_with_the_same_body_and_is_refused_with_another() {
        let hooks = StandardWebhooks::new(key());
        let ts = NOW.to_string();
        let first = b"{\"n\":1}";
        let sig = sign(key().key(), "msg_r", NOW, first);
        assert!(hooks.check(&request("msg_r", &ts, &sig, first), NOW).is_ok());
        // The same request again: passes here; intake's dedupe keys make it a no-op.
        assert!(hooks.check(&request("msg_r", &ts, &sig, first), NOW + 10).is_ok());
        // The same id, another body, validly signed: refused.
        let second = b"{\"n\":2}";
        let sig2 = sign(key().key(), "msg_r", NOW, second);
        let e = hooks.check(&request("msg_r", &ts, &sig2, second), NOW + 20).unwrap_err();
        assert_eq!(e, WebhookError::Replayed { id: "msg_r".into() });
        // Once the first timestamp is out of the tolerance, the id is forgotten, and the timestamp check refuses.
        let late = NOW + TOLERANCE_SECS + 1;
        assert!(matches!(
            hooks.check(&request("msg_r", &ts, &sig2, second), late),
            Err(WebhookError::OutsideTolerance { .. })
        ));
        // The next verified request forgets it.
        let sig3 = sign(key().key(), "msg_s", late, first);
        assert!(hooks.check(&request("msg_s", &late.to_string(), &sig3, first), late).is_ok());
        assert_eq!(hooks.seen.lock().by_id.keys().collect::<Vec<_>>(), ["msg_s"]);
    }

    #[test]
    fn header_checks_refuse_what_can_be_refused_without_the_body() {
        let auth = IntakeAuth::StandardWebhooks(Arc::new(StandardWebhooks::new(key())));
        let mut headers = HeaderMap::new();
        assert!(auth.check_headers(&headers, NOW).unwrap_err().message.contains("missing header webhook-id"));
        headers.insert(HEADER_ID, "m".parse().unwrap());
        headers.insert(HEADER_TIMESTAMP, (NOW - 301).to_string().parse().unwrap());
        headers.insert(HEADER_SIGNATURE, "v1,AAAA".parse().unwrap());
        assert!(matches!(auth.check_headers(&headers, NOW), Err(Refusal { status: StatusCode::UNAUTHORIZED, .. })));
        headers.insert(HEADER_TIMESTAMP, NOW.to_string().parse().unwrap());
        headers.insert(HEADER_SIGNATURE, "v2,AAAA".parse().unwrap());
        assert!(auth.check_headers(&headers, NOW).is_err());
        // Well-formed and in time: the body decides.
        headers.insert(HEADER_SIGNATURE, "v1,AAAA".parse().unwrap());
        assert_eq!(auth.check_headers(&headers, NOW), Ok(()));
        assert_eq!(auth.check_body(&headers, b"{}", NOW).unwrap_err().code, "unauthenticated");

        let api = IntakeAuth::ApiKey { header: "x-key".into(), key: Secret::new("k") };
        let mut headers = HeaderMap::new();
        assert_eq!(api.check_headers(&headers, NOW).unwrap_err().status, StatusCode::UNAUTHORIZED);
        headers.insert("x-key", "k".parse().unwrap());
        assert_eq!(api.check_headers(&headers, NOW), Ok(()));
        assert_eq!(api.check_body(&headers, b"anything", NOW), Ok(()));
    }

    #[test]
    fn refusals_map_to_401_and_409_and_never_echo_the_key_or_signature() {
        let auth = IntakeAuth::StandardWebhooks(Arc::new(StandardWebhooks::new(key())));
        let body = b"{}";
        let sig = sign(key().key(), "m", NOW, body);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ID, "m".parse().unwrap());
        headers.insert(HEADER_TIMESTAMP, NOW.to_string().parse().unwrap());
        headers.insert(HEADER_SIGNATURE, sig.parse().unwrap());
        assert_eq!(auth.check(&headers, body, NOW), Ok(()));
        let refusal = auth.check(&headers, b"{\"x\":1}", NOW).unwrap_err();
        assert_eq!((refusal.status, refusal.code), (StatusCode::UNAUTHORIZED, "unauthenticated"));
        for text in [&refusal.message, &format!("{auth:?}")] {
            assert!(!text.contains(&sig[3..]) && !text.contains("MfKQ9r8"), "{text}");
        }
        let sig2 = sign(key().key(), "m", NOW, b"{\"x\":1}");
        headers.insert(HEADER_SIGNATURE, sig2.parse().unwrap());
        let refusal = auth.check(&headers, b"{\"x\":1}", NOW).unwrap_err();
        assert_eq!((refusal.status, refusal.code), (StatusCode::CONFLICT, "replayed_webhook_id"));
        headers.remove(HEADER_SIGNATURE);
        let refusal = auth.check(&headers, body, NOW).unwrap_err();
        assert_eq!(refusal.status, StatusCode::UNAUTHORIZED);
        assert!(refusal.message.contains("missing header webhook-signature"), "{}", refusal.message);
    }
}
