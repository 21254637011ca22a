//! Configuration errors, each naming its key, and figment's errors with secret values hidden.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {}", describe(.0))]
    Parse(Box<figment::Error>),
    #[error("invalid configuration: `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

/// Keys whose values are secrets: a type error on one of them must not echo the value.
const SECRET_KEYS: [&str; 4] = ["tokens", "hmac_secrets", "url", "urls"];

/// Each error as `` `section.key`: what is wrong (where it came from) ``, keys in lower case as
/// the file spells them, whichever layer (file or `RELAY__…` variable) set them.
fn describe(err: &figment::Error) -> String {
    err.clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_ascii_lowercase();
            let origin = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(source) => format!(" (in {} {source})", m.name),
                    None => format!(" (in {})", m.name),
                })
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{origin}", e.kind)
            } else {
                format!("`{key}`: {}{origin}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// figment's type errors quote the value found (`found string "…"`); on a secret key that would
/// print a token or password to the terminal and the logs, so the value is replaced.
pub(super) fn hide_secret_values(err: figment::Error) -> figment::Error {
    use figment::error::{Actual, Kind};
    let hide = |actual: Actual| match actual {
        Actual::Str(_) => Actual::Other("a string (value hidden)".to_owned()),
        Actual::Bytes(_)
        | Actual::Char(_)
        | Actual::Signed(_)
        | Actual::Unsigned(_)
        | Actual::Float(_) => Actual::Other("a value (hidden)".to_owned()),
        other => other,
    };
    let masked = err.into_iter().map(|mut e| {
        if e.path
            .iter()
            .any(|segment| SECRET_KEYS.iter().any(|k| segment.eq_ignore_ascii_case(k)))
        {
            e.kind = match e.kind {
                Kind::InvalidType(actual, expected) => Kind::InvalidType(hide(actual), expected),
                Kind::InvalidValue(actual, expected) => Kind::InvalidValue(hide(actual), expected),
                Kind::Unsupported(actual) => Kind::Unsupported(hide(actual)),
                Kind::Message(_) => Kind::Message("invalid value (hidden: secret key)".to_owned()),
                other => other,
            };
        }
        // A TOML syntax error quotes the offending line, which may hold a secret: keep only
        // where it is and what is wrong.
        if let Kind::Message(text) = &e.kind {
            if text.contains("\n") && text.contains(" | ") {
                let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
                let place = lines.next().unwrap_or_default().to_owned();
                let reason = lines.rfind(|l| !l.contains('|')).unwrap_or_default();
                e.kind = Kind::Message(format!("{place}: {reason}"));
            }
        }
        e
    });
    masked
        .reduce(|chain, next| chain.chain(next))
        .unwrap_or_else(|| figment::Error::from("invalid configuration".to_owned()))
}

pub(super) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}
