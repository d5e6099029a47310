//! Standard Webhooks signatures, written here from the specification rather than shared with wrapup.
//!
//! The receiver plays an independent party: if wrapup's signer and this verifier came from the same code, a
//! mistake in it (the signed content, the encoding, the header's form) would cancel out and every test would pass.
//!
//! Per <https://www.standardwebhooks.com/>: the secret is `whsec_<base64 key>`; the signed content is
//! `{webhook-id}.{webhook-timestamp}.{body}`; `webhook-signature` holds one or more space-separated entries
//! `v1,<base64 HMAC-SHA256>` (several during a key rotation; one that verifies is enough, other versions are
//! skipped); `webhook-timestamp` is unix seconds and must be within the tolerance of the receiver's wall clock.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The specification's recommended tolerance between `webhook-timestamp` and the receiver's clock, either way.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;

/// A Standard Webhooks signing secret (`whsec_<base64>`). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Parses `whsec_<base64>` (the prefix is optional, as the reference libraries accept).
    pub fn parse(text: &str) -> Result<WebhookSecret, String> {
        let encoded = text.trim();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key =
            STANDARD.decode(encoded).map_err(|_| "a signing secret is `whsec_` and standard base64".to_string())?;
        if key.is_empty() {
            return Err("the signing key is empty".into());
        }
        Ok(WebhookSecret(key))
    }

    /// A fresh random 32-byte key.
    pub fn generate() -> WebhookSecret {
        use rand::RngCore;
        let mut key = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        WebhookSecret(key)
    }

    /// A 32-byte key drawn from `seed` and a label: the same seed gives the same secrets (`wrapup sandbox --crm`).
    pub fn from_seed(seed: u64, label: &str) -> WebhookSecret {
        use rand::{RngCore, SeedableRng};
        let salt =
            label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let mut key = vec![0u8; 32];
        rand::rngs::StdRng::seed_from_u64(seed ^ salt).fill_bytes(&mut key);
        WebhookSecret(key)
    }

    /// The `whsec_<base64>` text of this secret, for handing to a sender.
    pub fn to_whsec(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value a sender computes: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac = self.mac(id, &timestamp.to_string(), body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// Checks the three headers of a request at `now_unix`; `Ok` with the parsed timestamp, or why not.
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now_unix: i64,
        tolerance_secs: i64,
    ) -> Result<i64, Refusal> {
        let id = id.filter(|i| !i.is_empty()).ok_or(Refusal::Missing("webhook-id"))?;
        let timestamp = timestamp.ok_or(Refusal::Missing("webhook-timestamp"))?;
        let signature = signature.ok_or(Refusal::Missing("webhook-signature"))?;
        let ts: i64 = timestamp.trim().parse().map_err(|_| Refusal::BadTimestamp)?;
        if (ts - now_unix).abs() > tolerance_secs {
            return Err(Refusal::OutsideTolerance { skew_secs: ts - now_unix });
        }
        let mac = self.mac(id, timestamp.trim(), body);
        let verified = signature
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|sig| STANDARD.decode(sig).ok())
            .any(|sig| mac.clone().verify_slice(&sig).is_ok());
        if verified {
            Ok(ts)
        } else {
            Err(Refusal::NoMatchingSignature)
        }
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

/// Why a request was not verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no {0} header")]
    Missing(&'static str),
    #[error("webhook-timestamp is not unix seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {skew_secs} s away from the receiver's clock")]
    OutsideTolerance { skew_secs: i64 },
    #[error("no v1 signature matches")]
    NoMatchingSignature,
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification's reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret() -> WebhookSecret {
        WebhookSecret::parse(SECRET).unwrap()
    }

    fn check(sig: &str, body: &[u8], now: i64) -> Result<i64, Refusal> {
        secret().verify(Some(ID), Some(&TS.to_string()), Some(sig), body, now, DEFAULT_TOLERANCE_SECS)
    }

    #[test]
    fn the_specification_example_signs_and_verifies() {
        assert_eq!(secret().sign(ID, TS, BODY), SIGNATURE);
        assert_eq!(check(SIGNATURE, BODY, TS), Ok(TS));
    }

    #[test]
    fn an_altered_body_a_wrong_key_or_a_stale_timestamp_is_refused() {
        assert_eq!(check(SIGNATURE, br#"{"test": 2432232315}"#, TS), Err(Refusal::NoMatchingSignature));
        let other = WebhookSecret::generate();
        assert_eq!(
            other.verify(Some(ID), Some(&TS.to_string()), Some(SIGNATURE), BODY, TS, DEFAULT_TOLERANCE_SECS),
            Err(Refusal::NoMatchingSignature)
        );
        assert_eq!(check(SIGNATURE, BODY, TS + 301), Err(Refusal::OutsideTolerance { skew_secs: -301 }));
        assert_eq!(check(SIGNATURE, BODY, TS - 301), Err(Refusal::OutsideTolerance { skew_secs: 301 }));
        assert_eq!(check(SIGNATURE, BODY, TS + 300), Ok(TS));
    }

    #[test]
    fn one_matching_entry_among_several_is_enough() {
        let several = format!("v1a,AAAA v1,bm90IHRoaXM= {SIGNATURE}");
        assert_eq!(check(&several, BODY, TS), Ok(TS));
        assert_eq!(
            check("v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", BODY, TS),
            Err(Refusal::NoMatchingSignature)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let s = secret();
        assert_eq!(s.verify(None, Some("1"), Some("v1,x"), BODY, 1, 300), Err(Refusal::Missing("webhook-id")));
        assert_eq!(s.verify(Some(ID), None, Some("v1,x"), BODY, 1, 300), Err(Refusal::Missing("webhook-timestamp")));
        assert_eq!(s.verify(Some(ID), Some("1"), None, BODY, 1, 300), Err(Refusal::Missing("webhook-signature")));
        assert_eq!(s.verify(Some(ID), Some("soon"), Some("v1,x"), BODY, 1, 300), Err(Refusal::BadTimestamp));
    }

    #[test]
    fn a_secret_round_trips_through_its_text_and_never_prints() {
        let s = WebhookSecret::generate();
        assert_eq!(WebhookSecret::parse(&s.to_whsec()).unwrap(), s);
        assert_eq!(format!("{s:?}"), "WebhookSecret(***)");
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
    }
}
