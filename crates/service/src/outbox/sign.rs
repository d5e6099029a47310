//! The Standard Webhooks headers of one delivery. The signature is the one implementation the intake verifies
//! with ([`crate::intake_auth::sign`]): `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")).

use wrapup_config::SigningSecret;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The three headers for `body` sent as message `id` at `unix_seconds`.
pub fn headers(secret: &SigningSecret, id: &str, unix_seconds: i64, body: &[u8]) -> [(&'static str, String); 3] {
    [
        (HEADER_ID, id.to_string()),
        (HEADER_TIMESTAMP, unix_seconds.to_string()),
        (HEADER_SIGNATURE, crate::intake_auth::sign(secret.key(), id, unix_seconds, body)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headers_carry_the_specifications_example_signature() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let h = headers(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(h[0], (HEADER_ID, "msg_p5jXN8AQM9LWM0D4loKWxJek".to_string()));
        assert_eq!(h[1], (HEADER_TIMESTAMP, "1614265330".to_string()));
        assert_eq!(h[2], (HEADER_SIGNATURE, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string()));
    }
}
