//! Signatures over the raw body, compared in constant time: HMAC-SHA256 in `X-Signature-256` or
//! `X-Webhook-Signature`, and Standard Webhooks (`webhook-id.webhook-timestamp.body`, v1 entries).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Verifier, VerifyError};

type HmacSha256 = Hmac<Sha256>;

/// How far `webhook-timestamp` may be from our clock, either way (the Standard Webhooks default),
/// in nanoseconds: the clock is compared with its fraction of a second, as the reference libraries
/// compare it (Go's `time.Now()`, Python's `datetime.now()`). A whole-second clock would take a
/// timestamp of `floor(now) - 300`, which is up to a second past the tolerance.
const TIMESTAMP_TOLERANCE_NANOS: i128 = 5 * 60 * 1_000_000_000;

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

impl Verifier {
    pub(super) fn check_signature_256(
        &self,
        header: &[u8],
        body: &[u8],
    ) -> Result<(), VerifyError> {
        let header = header.trim_ascii();
        let (prefix, digits) = header.split_at_checked(7).ok_or(VerifyError::Malformed)?;
        if !prefix.eq_ignore_ascii_case(b"sha256=") {
            return Err(VerifyError::Malformed);
        }
        self.check_hex_mac(digits, body)
    }

    /// 64 hex digits (either case) of HMAC-SHA256 over the raw body, by any configured secret.
    pub(super) fn check_hex_mac(&self, digits: &[u8], body: &[u8]) -> Result<(), VerifyError> {
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

    pub(super) fn check_standard(
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
