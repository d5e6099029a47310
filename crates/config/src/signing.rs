//! The signing secret of a Standard Webhooks intake: `whsec_` followed by the key in standard base64.
//!
//! The key is decoded once, when the config is read, so that a malformed secret is a located config problem and
//! not a 401 on every request. Like [`wrapup_core::Secret`], it never prints its value.

use base64::Engine;
use std::fmt;

/// The Standard Webhooks prefix of a signing secret.
pub const SIGNING_SECRET_PREFIX: &str = "whsec_";
/// The key length the Standard Webhooks specification asks for, in bytes.
pub const SIGNING_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A decoded Standard Webhooks signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl SigningSecret {
    /// Decodes `whsec_<base64>`. The error never contains the value.
    pub fn parse(text: &str) -> Result<SigningSecret, String> {
        let Some(encoded) = text.trim().strip_prefix(SIGNING_SECRET_PREFIX) else {
            return Err(format!("a signing secret starts with `{SIGNING_SECRET_PREFIX}` (the value was not echoed)"));
        };
        let key = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| {
            format!("the part after `{SIGNING_SECRET_PREFIX}` is not standard base64 (the value was not echoed)")
        })?;
        if !SIGNING_KEY_BYTES.contains(&key.len()) {
            return Err(format!(
                "the signing key is {} bytes; Standard Webhooks keys are {} to {} bytes",
                key.len(),
                SIGNING_KEY_BYTES.start(),
                SIGNING_KEY_BYTES.end()
            ));
        }
        Ok(SigningSecret(key))
    }

    /// The key bytes. Read them only to compute a signature.
    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whsec_secret_decodes_and_bad_ones_are_refused_without_echo() {
        let key = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(key.key().len(), 24);
        assert_eq!(format!("{key:?}"), "SigningSecret(***)");
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!!", "whsec_c2hvcnQ=", "whsec_"] {
            let e = SigningSecret::parse(bad).unwrap_err();
            assert!(!e.contains("MfKQ9r8") && !e.contains("not base64") && !e.contains("c2hvcnQ"), "{e}");
        }
    }
}
