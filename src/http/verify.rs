//! Sender authentication on the raw body: URL/bearer tokens, X-Signature-256, Standard Webhooks.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

pub use crate::config::SecretError;
use crate::config::{decode_secret, first_run, ConnectionSettings};

type HmacSha256 = Hmac<Sha256>;

/// How far `webhook-timestamp` may be from our clock, either way (the Standard Webhooks default),
/// in nanoseconds: the clock is compared with its fraction of a second, as the reference libraries
/// compare it (Go's `time.Now()`, Python's `datetime.now()`). A whole-second clock would take a
/// timestamp of `floor(now) - 300`, which is up to a second past the tolerance.
const TIMESTAMP_TOLERANCE_NANOS: i128 = 5 * 60 * 1_000_000_000;

/// The credentials a request presented, as raw header values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Presented<'a> {
    /// The `{token}` segment of `/hooks/{connection}/{token}`.
    pub path_token: Option<&'a str>,
    /// `Authorization` header: `Bearer <token>`, or the bare token (Izing sends it so).
    pub authorization: Option<&'a [u8]>,
    /// `X-N8N-API-KEY` header: the bare token (Whazing's webhook integrations).
    pub api_key: Option<&'a [u8]>,
    /// `X-Signature-256` header (`sha256=<hex>`).
    pub signature_256: Option<&'a [u8]>,
    /// `X-Webhook-Signature` header: the hex HMAC-SHA256 of the body with no prefix.
    pub signature_hex: Option<&'a [u8]>,
    /// Standard Webhooks headers.
    pub webhook_id: Option<&'a [u8]>,
    pub webhook_timestamp: Option<&'a [u8]>,
    pub webhook_signature: Option<&'a [u8]>,
}

impl Presented<'_> {
    /// Whether it carries a signature, which only the body can prove.
    pub fn has_signature(&self) -> bool {
        self.signature_256.is_some()
            || self.signature_hex.is_some()
            || self.webhook_id.is_some()
            || self.webhook_timestamp.is_some()
            || self.webhook_signature.is_some()
    }

    /// The credentials of the request head alone: path token and token headers.
    fn tokens_only(&self) -> Self {
        Presented {
            path_token: self.path_token,
            authorization: self.authorization,
            api_key: self.api_key,
            ..Presented::default()
        }
    }
}

/// What the request head alone says of a caller.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadCheck {
    /// A valid token: the body may be read.
    Verified,
    /// No valid token, but a signature that only the body can prove or disprove.
    NeedsBody,
    /// Neither: refused before any body byte is read.
    Refused(VerifyError),
}

/// Why a request was not authenticated. Logged, never shown to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("no credentials presented")]
    Missing,
    #[error("token does not match")]
    BadToken,
    #[error("signature does not match")]
    BadSignature,
    #[error("malformed credentials")]
    Malformed,
    #[error("webhook-timestamp outside the tolerance")]
    Expired,
}

impl VerifyError {
    /// When several credentials fail, the one that got furthest tells the operator the most:
    /// an expired but otherwise well-formed signature points at clocks or replays, a mismatch at
    /// a wrong secret, and a malformed header merely at a client speaking another scheme.
    fn rank(&self) -> u8 {
        match self {
            VerifyError::Missing => 0,
            VerifyError::Malformed => 1,
            VerifyError::BadToken => 2,
            VerifyError::BadSignature => 3,
            VerifyError::Expired => 4,
        }
    }
}

/// What authenticated a request, as far as the event's identity goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified<'a> {
    /// A token, or an HMAC over the body alone: nothing the sender says about the event is signed.
    Credential,
    /// A Standard Webhooks signature, which signs `webhook-id` together with the body. `id` is
    /// that header's value as it was verified: the sender's own id of the event.
    StandardWebhooks { id: &'a [u8] },
}

impl<'a> Verified<'a> {
    /// The event's id as its sender signed it, when the credential signed one.
    pub fn sender_id(&self) -> Option<&'a [u8]> {
        match self {
            Verified::Credential => None,
            Verified::StandardWebhooks { id } => Some(id),
        }
    }
}

/// `sha256=<lowercase hex>` of the body, as a sender puts it in `X-Signature-256`.
pub fn sign_body(secret: &[u8], body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One `v1,<base64>` entry of a Standard Webhooks `webhook-signature` header.
pub fn sign_standard(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = standard_mac(
        secret,
        id.as_bytes(),
        timestamp.to_string().as_bytes(),
        body,
    );
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC hashes over-long keys and pads short ones, so no key length is rejected.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// The MAC state over Standard Webhooks' signed content `{id}.{timestamp}.{body}`, not yet finalized.
fn standard_mac(key: &[u8], id: &[u8], timestamp: &[u8], body: &[u8]) -> HmacSha256 {
    let mut mac = new_mac(key);
    mac.update(id);
    mac.update(b".");
    mac.update(timestamp);
    mac.update(b".");
    mac.update(body);
    mac
}

/// A connection's accepted credentials, prepared once at load.
#[derive(Clone)]
pub struct Verifier {
    /// SHA-256 of each accepted token: comparing fixed-size digests keeps the comparison
    /// constant-time even in the token's length, which a plain slice comparison would reveal.
    token_digests: Vec<[u8; 32]>,
    /// Decoded HMAC keys, in configuration order (several during a rotation).
    hmac_keys: Vec<Vec<u8>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts only: even token digests would let a reader test guesses offline.
        f.debug_struct("Verifier")
            .field("tokens", &self.token_digests.len())
            .field("hmac_secrets", &self.hmac_keys.len())
            .finish()
    }
}

fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Verifier {
    /// Accepts nothing: what an unknown connection is checked with, so that it is answered as
    /// a known one with wrong credentials is, step for step.
    pub const NONE: Verifier = Verifier {
        token_digests: Vec::new(),
        hmac_keys: Vec::new(),
    };

    /// The check of the request head: a token settles it; a signature needs the body, which is
    /// then read and given to [`Verifier::verify`].
    pub fn check_head(&self, presented: &Presented<'_>) -> HeadCheck {
        // Tokens do not look at the body or the clock.
        match self.verify(&presented.tokens_only(), &[], UNIX_EPOCH) {
            Ok(_) => HeadCheck::Verified,
            Err(_) if presented.has_signature() => HeadCheck::NeedsBody,
            Err(e) => HeadCheck::Refused(e),
        }
    }

    pub fn new(conn: &ConnectionSettings) -> Result<Self, SecretError> {
        let token_digests = conn
            .tokens
            .iter()
            // Published in earlier versions' default config: refused wherever it comes from.
            .filter(|t| !first_run::is_placeholder(t))
            .map(|t| {
                // An empty token would admit a request whose path token is empty.
                if t.expose().is_empty() {
                    Err(SecretError::Empty)
                } else {
                    Ok(token_digest(t.expose().as_bytes()))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hmac_keys = conn
            .hmac_secrets
            .iter()
            .map(|s| decode_secret(s.expose()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            token_digests,
            hmac_keys,
        })
    }

    /// Ok when at least one presented credential is valid for this connection; which one, when
    /// it was a Standard Webhooks signature (checked last, so only when nothing cheaper passed).
    pub fn verify<'a>(
        &self,
        presented: &Presented<'a>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified<'a>, VerifyError> {
        let mut worst: Option<VerifyError> = None;
        let mut record = |result: Result<(), VerifyError>| -> bool {
            match result {
                Ok(()) => true,
                Err(e) => {
                    if worst.as_ref().is_none_or(|w| e.rank() > w.rank()) {
                        worst = Some(e);
                    }
                    false
                }
            }
        };

        // Cheapest first: a token costs one hash, a signature one HMAC over the body per secret.
        if let Some(token) = presented.path_token {
            if record(self.check_token(token.as_bytes())) {
                return Ok(Verified::Credential);
            }
        }
        if let Some(header) = presented.authorization {
            if record(self.check_authorization(header)) {
                return Ok(Verified::Credential);
            }
        }
        if let Some(header) = presented.api_key {
            if record(self.check_bare_token(header)) {
                return Ok(Verified::Credential);
            }
        }
        if let Some(header) = presented.signature_256 {
            if record(self.check_signature_256(header, body)) {
                return Ok(Verified::Credential);
            }
        }
        if let Some(header) = presented.signature_hex {
            if record(self.check_hex_mac(header.trim_ascii(), body)) {
                return Ok(Verified::Credential);
            }
        }
        match [
            presented.webhook_id,
            presented.webhook_timestamp,
            presented.webhook_signature,
        ] {
            [None, None, None] => {}
            [Some(id), Some(timestamp), Some(signature)] => {
                // The id as signed and as it will key the event: the one trimmed slice for both.
                let id = id.trim_ascii();
                if record(self.check_standard(id, timestamp, signature, body, now)) {
                    return Ok(Verified::StandardWebhooks { id });
                }
            }
            // A partial set cannot be verified and signals a confused sender.
            _ => {
                record(Err(VerifyError::Malformed));
            }
        }
        Err(worst.unwrap_or(VerifyError::Missing))
    }

    fn check_token(&self, presented: &[u8]) -> Result<(), VerifyError> {
        let digest = token_digest(presented);
        // No early exit: the time taken must not reveal which (or whether a) rotated token matched.
        let matched = self
            .token_digests
            .iter()
            .fold(Choice::from(0), |acc, valid| acc | digest.ct_eq(valid));
        if bool::from(matched) {
            Ok(())
        } else {
            Err(VerifyError::BadToken)
        }
    }

    /// `Bearer <token>`, or one word taken as the token itself; any other scheme is not ours.
    fn check_authorization(&self, header: &[u8]) -> Result<(), VerifyError> {
        let header = header.trim_ascii();
        let Some(split) = header.iter().position(|&b| b == b' ') else {
            return self.check_bare_token(header);
        };
        let (scheme, rest) = header.split_at(split);
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return Err(VerifyError::Malformed);
        }
        self.check_bare_token(rest)
    }

    /// A header whose whole value is the token: one word, nothing else.
    fn check_bare_token(&self, value: &[u8]) -> Result<(), VerifyError> {
        let token = value.trim_ascii();
        if token.is_empty() || token.contains(&b' ') {
            return Err(VerifyError::Malformed);
        }
        self.check_token(token)
    }

    fn check_signature_256(&self, header: &[u8], body: &[u8]) -> Result<(), VerifyError> {
        let header = header.trim_ascii();
        let (prefix, digits) = header.split_at_checked(7).ok_or(VerifyError::Malformed)?;
        if !prefix.eq_ignore_ascii_case(b"sha256=") {
            return Err(VerifyError::Malformed);
        }
        self.check_hex_mac(digits, body)
    }

    /// 64 hex digits (either case) of HMAC-SHA256 over the raw body, by any configured secret.
    fn check_hex_mac(&self, digits: &[u8], body: &[u8]) -> Result<(), VerifyError> {
        let mut tag = [0u8; 32];
        // `hex` takes either case; a wrong length or non-hex digit leaves nothing to compare.
        hex::decode_to_slice(digits, &mut tag).map_err(|_| VerifyError::Malformed)?;
        let mut matched = false;
        for key in &self.hmac_keys {
            let mut mac = new_mac(key);
            mac.update(body);
            matched |= mac.verify_slice(&tag).is_ok();
        }
        if matched {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    fn check_standard(
        &self,
        id: &[u8],
        timestamp: &[u8],
        signature: &[u8],
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let timestamp = timestamp.trim_ascii();
        if id.is_empty() {
            return Err(VerifyError::Malformed);
        }
        let sent = parse_unix_seconds(timestamp).ok_or(VerifyError::Malformed)?;
        // Before any MAC: a replayed or stale request must not cost an HMAC over its body. Strictly
        // more than the tolerance either way is refused (`now - ts > 5 min`, `ts > now + 5 min`).
        let sent_nanos = i128::from(sent) * 1_000_000_000;
        if (unix_nanos(now) - sent_nanos).abs() > TIMESTAMP_TOLERANCE_NANOS {
            return Err(VerifyError::Expired);
        }

        let mut entries = 0usize;
        let mut tags: Vec<Vec<u8>> = Vec::new();
        for entry in signature.split(|&b| b == b' ').filter(|e| !e.is_empty()) {
            let Some(comma) = entry.iter().position(|&b| b == b',') else {
                continue;
            };
            entries += 1;
            let (version, payload) = (&entry[..comma], &entry[comma + 1..]);
            // Other versions (e.g. v1a, asymmetric) are for other verifiers; an undecodable v1
            // entry simply cannot match.
            if version == b"v1" {
                if let Ok(tag) = BASE64.decode(payload) {
                    tags.push(tag);
                }
            }
        }
        if entries == 0 {
            return Err(VerifyError::Malformed);
        }

        let mut matched = false;
        for key in &self.hmac_keys {
            // Hash the body once per key; each entry then only costs a finalization.
            let mac = standard_mac(key, id, timestamp, body);
            for tag in &tags {
                matched |= mac.clone().verify_slice(tag).is_ok();
            }
        }
        if matched {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

/// A `webhook-timestamp`: plain decimal digits only, so that what we parse is exactly what was signed.
fn parse_unix_seconds(text: &[u8]) -> Option<i64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Signed nanoseconds since the epoch: a clock set before 1970 must still compare, not panic.
fn unix_nanos(now: SystemTime) -> i128 {
    match now.duration_since(UNIX_EPOCH) {
        // A Duration's nanoseconds fit an i128 (at most 2^64 seconds of 10^9 each).
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Secret;

    const TOKEN_A: &str = "tok-alpha-0123456789";
    const TOKEN_B: &str = "tok-bravo-9876543210";
    const SECRET_A: &str = "hmac-secret-alpha";
    const SECRET_B: &str = "hmac-secret-bravo";
    const BODY: &[u8] = br#"{"event":"message.create","id":42}"#;

    // Standard Webhooks specification test vector.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const SPEC_ID_OK: Verified<'static> = Verified::StandardWebhooks {
        id: SPEC_ID.as_bytes(),
    };
    const MSG_1_OK: Verified<'static> = Verified::StandardWebhooks { id: b"msg_1" };

    fn conn(tokens: &[&str], secrets: &[&str]) -> ConnectionSettings {
        ConnectionSettings {
            name: "test".to_owned(),
            tokens: tokens.iter().map(|t| Secret::new(*t)).collect(),
            hmac_secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            company_id: None,
            rules: Vec::new(),
            body: None,
        }
    }

    fn verifier(tokens: &[&str], secrets: &[&str]) -> Verifier {
        Verifier::new(&conn(tokens, secrets)).expect("test secrets are valid")
    }

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).expect("test times are after 1970"))
    }

    fn now() -> SystemTime {
        at(1_700_000_000)
    }

    fn by_path(v: &Verifier, token: &str) -> Result<(), VerifyError> {
        v.verify(
            &Presented {
                path_token: Some(token),
                ..Default::default()
            },
            BODY,
            now(),
        )
        .map(|verified| assert_eq!(verified, Verified::Credential))
    }

    fn by_header(v: &Verifier, authorization: &str) -> Result<(), VerifyError> {
        v.verify(
            &Presented {
                authorization: Some(authorization.as_bytes()),
                ..Default::default()
            },
            BODY,
            now(),
        )
        .map(|verified| assert_eq!(verified, Verified::Credential))
    }

    fn by_sig256(v: &Verifier, signature: &str, body: &[u8]) -> Result<(), VerifyError> {
        v.verify(
            &Presented {
                signature_256: Some(signature.as_bytes()),
                ..Default::default()
            },
            body,
            now(),
        )
        .map(|verified| assert_eq!(verified, Verified::Credential))
    }

    fn standard<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> Presented<'a> {
        Presented {
            webhook_id: Some(id.as_bytes()),
            webhook_timestamp: Some(ts.as_bytes()),
            webhook_signature: Some(sig.as_bytes()),
            ..Default::default()
        }
    }

    fn spec_verifier() -> Verifier {
        verifier(&[], &[SPEC_SECRET])
    }

    fn spec_key() -> Vec<u8> {
        decode_secret(SPEC_SECRET).expect("spec secret decodes")
    }

    /// A valid Standard Webhooks signature for BODY by SECRET_A, sent at `ts`.
    fn signed_at(ts: i64) -> (String, String) {
        (
            ts.to_string(),
            sign_standard(SECRET_A.as_bytes(), "msg_1", ts, BODY),
        )
    }

    fn flip_last(s: &str) -> String {
        let mut bytes = s.as_bytes().to_vec();
        let last = bytes.last_mut().expect("non-empty");
        *last ^= 1;
        String::from_utf8(bytes).expect("ascii stays utf-8")
    }

    // --- decode_secret ---

    #[test]
    fn decode_secret_whsec_is_base64() {
        assert_eq!(decode_secret("whsec_aGVsbG8="), Ok(b"hello".to_vec()));
        assert_eq!(spec_key().len(), 24);
    }

    #[test]
    fn decode_secret_plain_is_raw_bytes() {
        assert_eq!(decode_secret("plain-secret"), Ok(b"plain-secret".to_vec()));
        // Only the exact prefix triggers decoding.
        assert_eq!(decode_secret("WHSEC_abc"), Ok(b"WHSEC_abc".to_vec()));
    }

    #[test]
    fn decode_secret_errors() {
        assert_eq!(decode_secret(""), Err(SecretError::Empty));
        assert_eq!(decode_secret("whsec_"), Err(SecretError::Empty));
        assert_eq!(
            decode_secret("whsec_not base64!"),
            Err(SecretError::BadBase64)
        );
        // One character past a multiple of four holds no whole byte, padded or not.
        assert_eq!(decode_secret("whsec_aGVsb"), Err(SecretError::BadBase64));
        assert_eq!(decode_secret("whsec_aGVsb==="), Err(SecretError::BadBase64));
    }

    #[test]
    fn decode_secret_whsec_padding_is_optional() {
        // The reference library's own unpadded-secret cases: none, one and two `=` missing.
        assert_eq!(decode_secret("whsec_aGVsbG8"), Ok(b"hello".to_vec()));
        assert_eq!(decode_secret("whsec_aGVsbA"), Ok(b"hell".to_vec()));
        assert_eq!(decode_secret("whsec_aGVsbA=="), Ok(b"hell".to_vec()));
        assert_eq!(
            decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Ok(spec_key())
        );
        // Unused low bits of the last character are ignored, as Go's and Python's decoders do:
        // `S` and `Q` differ only there.
        assert_eq!(
            decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS"),
            decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaQ=")
        );
    }

    #[test]
    fn new_rejects_bad_secrets_and_empty_tokens() {
        assert_eq!(
            Verifier::new(&conn(&[], &["whsec_%%%"])).err(),
            Some(SecretError::BadBase64)
        );
        assert_eq!(
            Verifier::new(&conn(&[], &[""])).err(),
            Some(SecretError::Empty)
        );
        assert_eq!(
            Verifier::new(&conn(&[""], &[])).err(),
            Some(SecretError::Empty)
        );
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let v = verifier(&[TOKEN_A], &[SECRET_A]);
        let text = format!("{v:?}");
        assert!(
            !text.contains(TOKEN_A) && !text.contains(SECRET_A),
            "{text}"
        );
        assert!(text.contains("Verifier"), "{text}");
    }

    // --- nothing presented ---

    #[test]
    fn the_head_check_settles_tokens_and_leaves_signatures_to_the_body() {
        let v = verifier(&["tok-aaaaaaaa"], &["secret"]);
        let token = Presented {
            path_token: Some("tok-aaaaaaaa"),
            ..Presented::default()
        };
        assert_eq!(v.check_head(&token), HeadCheck::Verified);
        let wrong = Presented {
            path_token: Some("tok-aaaaaaab"),
            ..Presented::default()
        };
        assert_eq!(
            v.check_head(&wrong),
            HeadCheck::Refused(VerifyError::BadToken)
        );
        assert_eq!(
            v.check_head(&Presented::default()),
            HeadCheck::Refused(VerifyError::Missing)
        );
        // A wrong token beside a signature: the signature may still prove the caller.
        let signed = Presented {
            path_token: Some("tok-aaaaaaab"),
            signature_256: Some(b"sha256=00"),
            ..Presented::default()
        };
        assert_eq!(v.check_head(&signed), HeadCheck::NeedsBody);
        // An unknown connection answers as a known one does, step for step.
        assert_eq!(
            Verifier::NONE.check_head(&wrong),
            HeadCheck::Refused(VerifyError::BadToken)
        );
        assert_eq!(Verifier::NONE.check_head(&signed), HeadCheck::NeedsBody);
        let body = b"{}";
        let sig = sign_body(b"secret", body);
        let presented = Presented {
            signature_256: Some(sig.as_bytes()),
            ..Presented::default()
        };
        assert_eq!(
            Verifier::NONE.verify(&presented, body, now()),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn nothing_presented_is_missing() {
        let v = verifier(&[TOKEN_A], &[SECRET_A]);
        assert_eq!(
            v.verify(&Presented::default(), BODY, now()),
            Err(VerifyError::Missing)
        );
    }

    // --- path token ---

    #[test]
    fn path_token_correct() {
        assert_eq!(by_path(&verifier(&[TOKEN_A], &[]), TOKEN_A), Ok(()));
    }

    #[test]
    fn path_token_wrong() {
        let v = verifier(&[TOKEN_A], &[]);
        assert_eq!(
            by_path(&v, "something-else-entirely"),
            Err(VerifyError::BadToken)
        );
        assert_eq!(by_path(&v, ""), Err(VerifyError::BadToken));
    }

    #[test]
    fn path_token_differing_in_last_byte() {
        let v = verifier(&[TOKEN_A], &[]);
        assert_eq!(by_path(&v, &flip_last(TOKEN_A)), Err(VerifyError::BadToken));
    }

    #[test]
    fn path_token_prefix_or_extension_of_valid() {
        let v = verifier(&[TOKEN_A], &[]);
        assert_eq!(
            by_path(&v, &TOKEN_A[..TOKEN_A.len() - 1]),
            Err(VerifyError::BadToken)
        );
        assert_eq!(
            by_path(&v, &format!("{TOKEN_A}x")),
            Err(VerifyError::BadToken)
        );
    }

    #[test]
    fn token_rotation_second_token_valid() {
        let v = verifier(&[TOKEN_A, TOKEN_B], &[]);
        assert_eq!(by_path(&v, TOKEN_B), Ok(()));
        assert_eq!(by_path(&v, TOKEN_A), Ok(()));
        assert_eq!(by_header(&v, &format!("Bearer {TOKEN_B}")), Ok(()));
    }

    #[test]
    fn connection_without_tokens_rejects_tokens() {
        let v = verifier(&[], &[SECRET_A]);
        assert_eq!(by_path(&v, TOKEN_A), Err(VerifyError::BadToken));
        assert_eq!(
            by_header(&v, &format!("Bearer {TOKEN_A}")),
            Err(VerifyError::BadToken)
        );
    }

    #[test]
    fn the_placeholder_is_refused_even_when_configured() {
        let v = verifier(&["change-me", TOKEN_A], &[]);
        assert_eq!(by_path(&v, "change-me"), Err(VerifyError::BadToken));
        assert_eq!(
            by_header(&v, "Bearer change-me"),
            Err(VerifyError::BadToken)
        );
        assert_eq!(by_path(&v, TOKEN_A), Ok(()));
    }

    // --- Authorization: Bearer ---

    #[test]
    fn bearer_ok() {
        let v = verifier(&[TOKEN_A], &[]);
        assert_eq!(by_header(&v, &format!("Bearer {TOKEN_A}")), Ok(()));
        assert_eq!(by_header(&v, &format!("bearer {TOKEN_A}")), Ok(()));
        assert_eq!(by_header(&v, &format!("BEARER   {TOKEN_A}")), Ok(()));
    }

    #[test]
    fn bearer_wrong_token() {
        let v = verifier(&[TOKEN_A], &[]);
        assert_eq!(
            by_header(&v, &format!("Bearer {}", flip_last(TOKEN_A))),
            Err(VerifyError::BadToken)
        );
    }

    #[test]
    fn bearer_bad_scheme_or_shape() {
        let v = verifier(&[TOKEN_A], &[]);
        assert_eq!(
            by_header(&v, &format!("Basic {TOKEN_A}")),
            Err(VerifyError::Malformed)
        );
        // One word is taken as a bare token, and the word "Bearer" is none of ours.
        assert_eq!(by_header(&v, "Bearer"), Err(VerifyError::BadToken));
        assert_eq!(by_header(&v, "Bearer   "), Err(VerifyError::BadToken));
        assert_eq!(by_header(&v, "Bearer \t "), Err(VerifyError::BadToken));
        assert_eq!(
            by_header(&v, &format!("Bearer {TOKEN_A} extra")),
            Err(VerifyError::Malformed)
        );
    }

    // --- bare tokens: `Authorization: <token>` (Izing), `X-N8N-API-KEY: <token>` (Whazing) ---

    fn by_api_key(v: &Verifier, key: &str) -> Result<(), VerifyError> {
        v.verify(
            &Presented {
                api_key: Some(key.as_bytes()),
                ..Default::default()
            },
            BODY,
            now(),
        )
        .map(|verified| assert_eq!(verified, Verified::Credential))
    }

    #[test]
    fn bare_authorization_token() {
        let v = verifier(&[TOKEN_A, TOKEN_B], &[]);
        assert_eq!(by_header(&v, TOKEN_A), Ok(()));
        assert_eq!(by_header(&v, &format!("  {TOKEN_B}\t")), Ok(()));
        assert_eq!(
            by_header(&v, &flip_last(TOKEN_A)),
            Err(VerifyError::BadToken)
        );
        assert_eq!(
            by_header(&v, &TOKEN_A[..TOKEN_A.len() - 1]),
            Err(VerifyError::BadToken)
        );
        assert_eq!(
            by_header(&v, &format!("{TOKEN_A}x")),
            Err(VerifyError::BadToken)
        );
        assert_eq!(by_header(&v, ""), Err(VerifyError::Malformed));
    }

    #[test]
    fn api_key_header_token() {
        let v = verifier(&[TOKEN_A], &[]);
        assert_eq!(by_api_key(&v, TOKEN_A), Ok(()));
        assert_eq!(by_api_key(&v, &format!(" {TOKEN_A} ")), Ok(()));
        assert_eq!(
            by_api_key(&v, &flip_last(TOKEN_A)),
            Err(VerifyError::BadToken)
        );
        assert_eq!(
            by_api_key(&v, &format!("Bearer {TOKEN_A}")),
            Err(VerifyError::Malformed)
        );
        assert_eq!(by_api_key(&v, ""), Err(VerifyError::Malformed));
        // A connection with secrets only takes no token, however it is presented.
        let signed_only = verifier(&[], &[SECRET_A]);
        assert_eq!(
            by_api_key(&signed_only, TOKEN_A),
            Err(VerifyError::BadToken)
        );
    }

    // --- X-Webhook-Signature: bare hex HMAC ---

    fn by_hex(v: &Verifier, signature: &str, body: &[u8]) -> Result<(), VerifyError> {
        v.verify(
            &Presented {
                signature_hex: Some(signature.as_bytes()),
                ..Default::default()
            },
            body,
            now(),
        )
        .map(|verified| assert_eq!(verified, Verified::Credential))
    }

    fn hex_of(secret: &str, body: &[u8]) -> String {
        sign_body(secret.as_bytes(), body)["sha256=".len()..].to_owned()
    }

    #[test]
    fn hex_signature_valid_either_case_and_rotated() {
        let v = verifier(&[], &[SECRET_A, SECRET_B]);
        assert_eq!(by_hex(&v, &hex_of(SECRET_A, BODY), BODY), Ok(()));
        assert_eq!(
            by_hex(&v, &hex_of(SECRET_B, BODY).to_uppercase(), BODY),
            Ok(())
        );
    }

    #[test]
    fn hex_signature_tampered_body_digit_or_secret() {
        let v = verifier(&[], &[SECRET_A]);
        let good = hex_of(SECRET_A, BODY);
        let mut body = BODY.to_vec();
        body[5] ^= 1;
        assert_eq!(by_hex(&v, &good, &body), Err(VerifyError::BadSignature));
        let mut digits = good.clone().into_bytes();
        digits[10] = if digits[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(digits).expect("hex is ASCII");
        assert_eq!(by_hex(&v, &flipped, BODY), Err(VerifyError::BadSignature));
        assert_eq!(
            by_hex(&v, &hex_of(SECRET_B, BODY), BODY),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn hex_signature_malformed() {
        let v = verifier(&[], &[SECRET_A]);
        let good = hex_of(SECRET_A, BODY);
        assert_eq!(by_hex(&v, &good[..62], BODY), Err(VerifyError::Malformed));
        assert_eq!(
            by_hex(&v, &format!("{good}00"), BODY),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            by_hex(&v, &"zz".repeat(32), BODY),
            Err(VerifyError::Malformed)
        );
        assert_eq!(by_hex(&v, "", BODY), Err(VerifyError::Malformed));
        // A token is no signature.
        let tokens_only = verifier(&[TOKEN_A], &[]);
        assert_eq!(
            by_hex(&tokens_only, &good, BODY),
            Err(VerifyError::BadSignature)
        );
    }

    // --- X-Signature-256 ---

    #[test]
    fn sig256_valid() {
        let v = verifier(&[], &[SECRET_A]);
        let sig = sign_body(SECRET_A.as_bytes(), BODY);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert_eq!(by_sig256(&v, &sig, BODY), Ok(()));
    }

    #[test]
    fn sig256_known_value() {
        // The widely published HMAC-SHA256 example (key "key", the quick brown fox).
        assert_eq!(
            sign_body(b"key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn sig256_flipped_body_byte() {
        let v = verifier(&[], &[SECRET_A]);
        let sig = sign_body(SECRET_A.as_bytes(), BODY);
        let mut body = BODY.to_vec();
        body[5] ^= 0x01;
        assert_eq!(by_sig256(&v, &sig, &body), Err(VerifyError::BadSignature));
    }

    #[test]
    fn sig256_flipped_hex_digit() {
        let v = verifier(&[], &[SECRET_A]);
        let sig = sign_body(SECRET_A.as_bytes(), BODY);
        let mut bytes = sig.into_bytes();
        bytes[10] = if bytes[10] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert_eq!(
            by_sig256(&v, &tampered, BODY),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn sig256_uppercase_hex_accepted() {
        let v = verifier(&[], &[SECRET_A]);
        let sig = sign_body(SECRET_A.as_bytes(), BODY);
        let upper = format!("sha256={}", sig["sha256=".len()..].to_ascii_uppercase());
        assert_ne!(upper, sig);
        assert_eq!(by_sig256(&v, &upper, BODY), Ok(()));
    }

    #[test]
    fn sig256_missing_prefix_or_bad_hex() {
        let v = verifier(&[], &[SECRET_A]);
        let sig = sign_body(SECRET_A.as_bytes(), BODY);
        let bare = &sig["sha256=".len()..];
        assert_eq!(by_sig256(&v, bare, BODY), Err(VerifyError::Malformed));
        assert_eq!(
            by_sig256(&v, &format!("sha1={bare}"), BODY),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            by_sig256(&v, &sig[..sig.len() - 2], BODY),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            by_sig256(&v, &format!("sha256={}", "zz".repeat(32)), BODY),
            Err(VerifyError::Malformed)
        );
        assert_eq!(by_sig256(&v, "", BODY), Err(VerifyError::Malformed));
    }

    #[test]
    fn sig256_secret_rotation_second_valid() {
        let v = verifier(&[], &[SECRET_A, SECRET_B]);
        assert_eq!(
            by_sig256(&v, &sign_body(SECRET_B.as_bytes(), BODY), BODY),
            Ok(())
        );
        let other = sign_body(b"unrelated-secret", BODY);
        assert_eq!(by_sig256(&v, &other, BODY), Err(VerifyError::BadSignature));
    }

    #[test]
    fn connection_without_secrets_rejects_signatures() {
        let v = verifier(&[TOKEN_A], &[]);
        assert_eq!(
            by_sig256(&v, &sign_body(SECRET_A.as_bytes(), BODY), BODY),
            Err(VerifyError::BadSignature)
        );
        let (ts, sig) = signed_at(1_700_000_000);
        assert_eq!(
            v.verify(&standard("msg_1", &ts, &sig), BODY, now()),
            Err(VerifyError::BadSignature)
        );
    }

    // --- Standard Webhooks ---

    #[test]
    fn standard_spec_vector() {
        assert_eq!(
            sign_standard(&spec_key(), SPEC_ID, SPEC_TS, SPEC_BODY),
            SPEC_SIG
        );
        let p = standard(SPEC_ID, "1614265330", SPEC_SIG);
        assert_eq!(
            spec_verifier().verify(&p, SPEC_BODY, at(SPEC_TS)),
            Ok(SPEC_ID_OK)
        );
    }

    #[test]
    fn standard_valid_with_plain_secret() {
        let v = verifier(&[], &[SECRET_A]);
        let (ts, sig) = signed_at(1_700_000_000);
        assert_eq!(
            v.verify(&standard("msg_1", &ts, &sig), BODY, now()),
            Ok(MSG_1_OK)
        );
    }

    #[test]
    fn standard_names_the_signed_id_and_other_credentials_none() {
        let v = verifier(&[TOKEN_A], &[SECRET_A]);
        let (ts, sig) = signed_at(1_700_000_000);
        // The id as signed: surrounding blanks are no part of it (an HTTP parser drops them too).
        let padded = standard(" msg_1\t", &ts, &sig);
        let verified = v.verify(&padded, BODY, now());
        assert_eq!(verified, Ok(MSG_1_OK));
        assert_eq!(verified.map(|v| v.sender_id()), Ok(Some(&b"msg_1"[..])));
        // A cheaper credential that passes first leaves the id unverified, so unused.
        let with_token = Presented {
            path_token: Some(TOKEN_A),
            ..standard("msg_1", &ts, &sig)
        };
        let verified = v.verify(&with_token, BODY, now());
        assert_eq!(verified, Ok(Verified::Credential));
        assert_eq!(verified.map(|v| v.sender_id()), Ok(None));
        // A wrong token beside a valid signature: the signature is what verified.
        let wrong_token = Presented {
            path_token: Some("wrong-token-value"),
            ..standard("msg_1", &ts, &sig)
        };
        assert_eq!(v.verify(&wrong_token, BODY, now()), Ok(MSG_1_OK));
    }

    #[test]
    fn standard_tolerance_is_five_minutes_either_way() {
        let v = verifier(&[], &[SECRET_A]);
        for offset in [-300, 300] {
            let (ts, sig) = signed_at(1_700_000_000 + offset);
            assert_eq!(
                v.verify(&standard("msg_1", &ts, &sig), BODY, now()),
                Ok(MSG_1_OK),
                "offset {offset}"
            );
        }
    }

    #[test]
    fn standard_tolerance_counts_the_fraction_of_a_second() {
        // The Go library's "old timestamp fails": signed at floor(now) - 300, checked a moment
        // after that second began. The sender's side of the boundary stays open to the second.
        let v = verifier(&[], &[SECRET_A]);
        for (fraction, offset, expected) in [
            (Duration::from_nanos(1), -300, Err(VerifyError::Expired)),
            (Duration::from_millis(500), -300, Err(VerifyError::Expired)),
            (Duration::from_millis(999), -299, Ok(MSG_1_OK)),
            (Duration::ZERO, -300, Ok(MSG_1_OK)),
            (Duration::from_millis(999), 300, Ok(MSG_1_OK)),
            (Duration::ZERO, 301, Err(VerifyError::Expired)),
            (Duration::from_millis(999), 301, Err(VerifyError::Expired)),
        ] {
            let (ts, sig) = signed_at(1_700_000_000 + offset);
            assert_eq!(
                v.verify(&standard("msg_1", &ts, &sig), BODY, now() + fraction),
                expected,
                "now + {fraction:?}, offset {offset}"
            );
        }
    }

    #[test]
    fn standard_expired_past_and_future() {
        let v = verifier(&[], &[SECRET_A]);
        for offset in [-360, 360, -301, 301] {
            let (ts, sig) = signed_at(1_700_000_000 + offset);
            assert_eq!(
                v.verify(&standard("msg_1", &ts, &sig), BODY, now()),
                Err(VerifyError::Expired),
                "{offset}"
            );
        }
        // The spec vector itself, checked six minutes too late or too early.
        let p = standard(SPEC_ID, "1614265330", SPEC_SIG);
        assert_eq!(
            spec_verifier().verify(&p, SPEC_BODY, at(SPEC_TS + 360)),
            Err(VerifyError::Expired)
        );
        assert_eq!(
            spec_verifier().verify(&p, SPEC_BODY, at(SPEC_TS - 360)),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn standard_timestamp_checked_before_signature() {
        // A garbage signature with a stale timestamp reports the timestamp.
        let p = standard(SPEC_ID, "1614265330", "v1,AAAA");
        assert_eq!(
            spec_verifier().verify(&p, SPEC_BODY, at(SPEC_TS + 3600)),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn standard_tampered_id_timestamp_or_body() {
        let v = spec_verifier();
        let tampered_id = standard("msg_p5jXN8AQM9LWM0D4loKWxJeK", "1614265330", SPEC_SIG);
        assert_eq!(
            v.verify(&tampered_id, SPEC_BODY, at(SPEC_TS)),
            Err(VerifyError::BadSignature)
        );
        let tampered_ts = standard(SPEC_ID, "1614265331", SPEC_SIG);
        assert_eq!(
            v.verify(&tampered_ts, SPEC_BODY, at(SPEC_TS)),
            Err(VerifyError::BadSignature)
        );
        let p = standard(SPEC_ID, "1614265330", SPEC_SIG);
        assert_eq!(
            v.verify(&p, br#"{"test": 2432232315}"#, at(SPEC_TS)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn standard_several_signatures_second_valid() {
        let v = spec_verifier();
        let wrong = sign_standard(b"another-key", SPEC_ID, SPEC_TS, SPEC_BODY);
        let header = format!("{wrong} {SPEC_SIG}");
        assert_eq!(
            v.verify(
                &standard(SPEC_ID, "1614265330", &header),
                SPEC_BODY,
                at(SPEC_TS)
            ),
            Ok(SPEC_ID_OK)
        );
        let only_wrong = format!("{wrong} v1,bm90LWEtbWFj");
        assert_eq!(
            v.verify(
                &standard(SPEC_ID, "1614265330", &only_wrong),
                SPEC_BODY,
                at(SPEC_TS)
            ),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn standard_unknown_version_only_is_rejected() {
        let v = spec_verifier();
        let header = SPEC_SIG.replacen("v1,", "v2,", 1);
        let result = v.verify(
            &standard(SPEC_ID, "1614265330", &header),
            SPEC_BODY,
            at(SPEC_TS),
        );
        assert_eq!(result, Err(VerifyError::BadSignature));
        // Ignored entries do not spoil a valid one beside them.
        let mixed = format!("v1a,xyz {header} {SPEC_SIG}");
        assert_eq!(
            v.verify(
                &standard(SPEC_ID, "1614265330", &mixed),
                SPEC_BODY,
                at(SPEC_TS)
            ),
            Ok(SPEC_ID_OK)
        );
    }

    #[test]
    fn standard_secret_rotation_second_valid() {
        let v = verifier(&[], &[SECRET_B, SPEC_SECRET]);
        assert_eq!(
            v.verify(
                &standard(SPEC_ID, "1614265330", SPEC_SIG),
                SPEC_BODY,
                at(SPEC_TS)
            ),
            Ok(SPEC_ID_OK)
        );
    }

    #[test]
    fn standard_missing_one_header_is_malformed() {
        let v = spec_verifier();
        let full = standard(SPEC_ID, "1614265330", SPEC_SIG);
        let cases = [
            Presented {
                webhook_id: None,
                ..full
            },
            Presented {
                webhook_timestamp: None,
                ..full
            },
            Presented {
                webhook_signature: None,
                ..full
            },
        ];
        for p in cases {
            assert_eq!(
                v.verify(&p, SPEC_BODY, at(SPEC_TS)),
                Err(VerifyError::Malformed),
                "{p:?}"
            );
        }
    }

    #[test]
    fn standard_malformed_values() {
        let v = spec_verifier();
        for ts in [
            "",
            "abc",
            "1614265330.5",
            "-1614265330",
            "+1614265330",
            "99999999999999999999",
        ] {
            let p = standard(SPEC_ID, ts, SPEC_SIG);
            assert_eq!(
                v.verify(&p, SPEC_BODY, at(SPEC_TS)),
                Err(VerifyError::Malformed),
                "timestamp {ts:?}"
            );
        }
        for sig in ["", "   ", "nocomma"] {
            let p = standard(SPEC_ID, "1614265330", sig);
            assert_eq!(
                v.verify(&p, SPEC_BODY, at(SPEC_TS)),
                Err(VerifyError::Malformed),
                "signature {sig:?}"
            );
        }
        let p = standard("", "1614265330", SPEC_SIG);
        assert_eq!(
            v.verify(&p, SPEC_BODY, at(SPEC_TS)),
            Err(VerifyError::Malformed)
        );
    }

    // --- several credentials at once ---

    #[test]
    fn any_valid_credential_suffices() {
        let v = verifier(&[TOKEN_A], &[SECRET_A]);
        let sig = sign_body(SECRET_A.as_bytes(), BODY);
        let p = Presented {
            path_token: Some("wrong-token-value"),
            authorization: Some(b"Basic dXNlcjpwYXNz"),
            signature_256: Some(sig.as_bytes()),
            ..Default::default()
        };
        assert_eq!(v.verify(&p, BODY, now()), Ok(Verified::Credential));
    }

    #[test]
    fn most_informative_error_wins() {
        let v = verifier(&[TOKEN_A], &[SECRET_A]);
        let (ts, sig) = signed_at(1_700_000_000 - 3600);
        let p = Presented {
            path_token: Some("wrong-token-value"),
            authorization: Some(b"Basic dXNlcjpwYXNz"),
            ..standard("msg_1", &ts, &sig)
        };
        assert_eq!(v.verify(&p, BODY, now()), Err(VerifyError::Expired));
        let p = Presented {
            path_token: Some("wrong-token-value"),
            authorization: Some(b"Basic dXNlcjpwYXNz"),
            ..Default::default()
        };
        assert_eq!(v.verify(&p, BODY, now()), Err(VerifyError::BadToken));
    }

    #[test]
    fn clock_before_epoch_does_not_panic() {
        let v = spec_verifier();
        let before = UNIX_EPOCH - Duration::from_secs(10);
        let p = standard(SPEC_ID, "1614265330", SPEC_SIG);
        assert_eq!(v.verify(&p, SPEC_BODY, before), Err(VerifyError::Expired));
    }
}
