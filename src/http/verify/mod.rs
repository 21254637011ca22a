//! Sender authentication on the raw body: URL/bearer tokens, X-Signature-256, Standard Webhooks.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

pub use crate::config::SecretError;
use crate::config::{decode_secret, first_run, ConnectionSettings};

mod signature;
pub use signature::{sign_body, sign_standard};

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
}

#[cfg(test)]
mod tests;
