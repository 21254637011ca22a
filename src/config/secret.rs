//! Secrets in the configuration: wrapped so `Debug` and `check-config` never print them.

use std::fmt;

use base64::alphabet::STANDARD as ALPHABET;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::{Deserialize, Serialize, Serializer};

/// The prefix Standard Webhooks uses for base64-encoded secrets.
const WHSEC_PREFIX: &str = "whsec_";

/// Standard base64 as the Standard Webhooks libraries read a `whsec_` secret: with or without its
/// `=` padding (Python's pads it before decoding, and its tests sign with unpadded secrets), and
/// with the unused low bits of the last character ignored, as Go's `StdEncoding` and Python's
/// `b64decode` ignore them, so a secret one of them takes is never refused here.
const WHSEC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &ALPHABET,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A secret string: never printed by `Debug`, masked when serialized (e.g. by `check-config`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used (comparison, connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// The broker URL: a secret because it carries the password; shown with the password masked.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct AmqpUrl(Secret);

impl AmqpUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(Secret::new(url))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// `host:port` of the node, the name logs, metrics and `/readyz` give it: no user, no
    /// password, no vhost. The port defaults as AMQP's (5672, 5671 for amqps).
    pub fn node(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(url) => {
                let port = url.port().unwrap_or(match url.scheme() {
                    "amqps" => 5671,
                    _ => 5672,
                });
                match url.host() {
                    Some(url::Host::Ipv6(ip)) => format!("[{ip}]:{port}"),
                    Some(host) => format!("{host}:{port}"),
                    None => format!("?:{port}"),
                }
            }
            Err(_) => "***".to_owned(),
        }
    }

    /// The URL with its password replaced by `***`, fit for logs.
    pub fn masked(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(mut url) => {
                if url.password().is_some() {
                    // set_password only fails for URLs that cannot have one; then hide it all.
                    if url.set_password(Some("***")).is_err() {
                        return "***".to_owned();
                    }
                }
                url.to_string()
            }
            Err(_) => "***".to_owned(),
        }
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({})", self.masked())
    }
}

impl Serialize for AmqpUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
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
    let key = match secret.strip_prefix(WHSEC_PREFIX) {
        Some(encoded) => WHSEC_BASE64
            .decode(encoded)
            .map_err(|_| SecretError::BadBase64)?,
        None => secret.as_bytes().to_vec(),
    };
    // An empty HMAC key is valid to the algorithm but guessable by anyone.
    if key.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(key)
}
