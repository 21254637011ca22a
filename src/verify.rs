//! Sender authentication on the raw body: URL/bearer tokens, X-Signature-256, Standard Webhooks.

use std::time::SystemTime;

use crate::config::ConnectionSettings;

/// The credentials a request presented, as raw header values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Presented<'a> {
    /// The `{token}` segment of `/hooks/{connection}/{token}`.
    pub path_token: Option<&'a str>,
    /// `Authorization` header (expects `Bearer <token>`).
    pub authorization: Option<&'a [u8]>,
    /// `X-Signature-256` header (`sha256=<hex>`).
    pub signature_256: Option<&'a [u8]>,
    /// Standard Webhooks headers.
    pub webhook_id: Option<&'a [u8]>,
    pub webhook_timestamp: Option<&'a [u8]>,
    pub webhook_signature: Option<&'a [u8]>,
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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("empty secret")]
    Empty,
    #[error("whsec_ secret is not valid base64")]
    BadBase64,
}

/// Turns a configured secret into key bytes: `whsec_<base64>` is decoded, anything else used as is.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SecretError> {
    let _ = secret;
    todo!("verify::decode_secret")
}

/// A connection's accepted credentials, prepared once at load.
#[derive(Clone)]
pub struct Verifier {}

impl Verifier {
    pub fn new(conn: &ConnectionSettings) -> Result<Self, SecretError> {
        let _ = conn;
        todo!("Verifier::new")
    }

    /// Ok when at least one presented credential is valid for this connection.
    pub fn verify(&self, presented: &Presented<'_>, body: &[u8], now: SystemTime) -> Result<(), VerifyError> {
        let _ = (presented, body, now);
        todo!("Verifier::verify")
    }
}
