use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderMap, HeaderValue, StatusCode};
use std::sync::{Arc, OnceLock};
use wrapup_config::SigningSecret;
use wrapup_service::intake_auth::{self, IntakeAuth, StandardWebhooks, TOLERANCE_SECS};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_767_225_600;

/// One request as the fuzzer builds it: raw header bytes, a body, and whether to slip in a real signature.
#[derive(Arbitrary, Debug)]
pub struct StandardWebhooksInput<'a> {
    id: Option<&'a [u8]>,
    timestamp: Option<&'a [u8]>,
    signature: Option<&'a [u8]>,
    body: &'a [u8],
    /// Sign for real, at `NOW + offset`, and put the signature at `position` among the fuzzed ones.
    sign: Option<(i16, u8)>,
}

fn auth() -> &'static IntakeAuth {
    // One instance for the whole run, so that the replay memory sees many requests.
    static AUTH: OnceLock<IntakeAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        IntakeAuth::StandardWebhooks(Arc::new(StandardWebhooks::new(SigningSecret::parse(SECRET).unwrap())))
    })
}

/// [`standard_webhooks_input`] on the input the bytes decode to, decoded as `fuzz_target!` decodes a typed input
/// (too short for the type's minimum, or not decodable: nothing to check), so that a seed or crash file means the
/// same here as under cargo-fuzz.
pub fn standard_webhooks(data: &[u8]) {
    if data.len() < StandardWebhooksInput::size_hint(0).0 {
        return;
    }
    if let Ok(input) = StandardWebhooksInput::arbitrary_take_rest(Unstructured::new(data)) {
        standard_webhooks_input(input);
    }
}

/// Standard Webhooks intake auth: arbitrary `webhook-id`, `webhook-timestamp` and `webhook-signature` header bytes
/// and bodies, through the header parsing and verification of `IntakeAuth::check`. Never a panic; a refusal is a
/// 401 or a 409 with a message that does not contain the key. When the input asks for it, a real signature is added
/// among the fuzzed ones: then the request must pass exactly when its timestamp is within the tolerance.
///
/// The fuzz target takes the typed input (so `cargo fuzz fmt` shows a crash as headers and body); the seed replay goes
/// through [`standard_webhooks`].
pub fn standard_webhooks_input(input: StandardWebhooksInput<'_>) {
    let key = SigningSecret::parse(SECRET).unwrap();
    let mut headers = HeaderMap::new();
    let mut timestamp = input.timestamp.map(<[u8]>::to_vec);
    let mut signature = input.signature.map(<[u8]>::to_vec);
    let mut expect_ok = None;
    if let (Some((offset, position)), Some(id)) = (input.sign, input.id.and_then(|i| std::str::from_utf8(i).ok())) {
        let ts = NOW + i64::from(offset);
        let real = intake_auth::sign(key.key(), id, ts, input.body);
        let mut parts: Vec<Vec<u8>> = signature.unwrap_or_default().split(|b| *b == b' ').map(<[u8]>::to_vec).collect();
        let at = usize::from(position) % (parts.len() + 1);
        parts.insert(at, real.into_bytes());
        signature = Some(parts.join(&b' '));
        timestamp = Some(ts.to_string().into_bytes());
        let id_ok = !id.is_empty() && id.len() <= 256 && id.bytes().all(|b| b.is_ascii_graphic());
        expect_ok = Some(id_ok && i64::from(offset).abs() <= TOLERANCE_SECS);
    }
    for (name, value) in [
        (intake_auth::HEADER_ID, input.id.map(<[u8]>::to_vec)),
        (intake_auth::HEADER_TIMESTAMP, timestamp),
        (intake_auth::HEADER_SIGNATURE, signature),
    ] {
        if let Some(v) = value {
            match HeaderValue::from_bytes(&v) {
                Ok(v) => {
                    headers.insert(name, v);
                }
                // Bytes no HTTP server would hand over as a header value.
                Err(_) => return,
            }
        }
    }
    match auth().check(&headers, input.body, NOW) {
        Ok(()) => assert_ne!(expect_ok, Some(false), "accepted a request that must be refused"),
        Err(refusal) => {
            assert!(
                refusal.status == StatusCode::UNAUTHORIZED || refusal.status == StatusCode::CONFLICT,
                "{refusal:?}"
            );
            assert!(!refusal.message.contains("MfKQ9r8"), "{refusal:?}");
            // A correctly signed, timely request is refused only as a replay of its id with another body.
            if expect_ok == Some(true) {
                assert_eq!(refusal.status, StatusCode::CONFLICT, "{refusal:?}");
            }
        }
    }
}
