//! `[redact]`: the keys whose values never leave the relay, and what an operator's own list of
//! them dropped from the built-in one.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, Settings};
use crate::event::RedactKeys;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedactSettings {
    /// The built-in credential keys (`config/default.toml`); a layer that sets it replaces them,
    /// and `check-config` then names the ones it dropped.
    pub keys: Vec<String>,
    /// The operator's own keys, redacted besides `keys`.
    #[serde(default)]
    pub extra_keys: Vec<String>,
}

impl RedactSettings {
    /// The matcher the relay redacts with: `keys` and `extra_keys` together.
    pub fn matcher(&self) -> RedactKeys {
        RedactKeys::new(self.keys.iter().chain(&self.extra_keys))
    }

    /// Keys that would redact nothing are refused, naming where they are.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let lists = [("keys", &self.keys), ("extra_keys", &self.extra_keys)];
        for (list, keys) in lists {
            for (i, key) in keys.iter().enumerate() {
                if key.bytes().all(|b| b == b'-' || b == b'_') {
                    return Err(invalid(
                        format!("redact.{list}[{i}]"),
                        "must name a key: `-` and `_` alone are ignored in key names",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The built-in keys this configuration no longer redacts, as the built-in list spells them.
    pub fn missing_defaults(&self) -> Vec<String> {
        let defaults = Settings::default().redact.keys;
        self.matcher()
            .missing(&defaults)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// What `check-config` and `serve` say about a list that dropped built-in keys.
    pub fn warning(&self) -> Option<String> {
        let missing = self.missing_defaults();
        if missing.is_empty() {
            return None;
        }
        Some(format!(
            "redact.keys no longer covers the built-in credential keys {}: their values are \
             stored and published as received. Keep the built-in list and add your own keys \
             with redact.extra_keys",
            missing
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin_keys() -> Vec<String> {
        Settings::default().redact.keys
    }

    fn settings(keys: &[&str], extra: &[&str]) -> RedactSettings {
        RedactSettings {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            extra_keys: extra.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn the_built_in_list_covers_every_credential_senders_put_in_bodies() {
        let redact = Settings::default().redact;
        assert!(redact.extra_keys.is_empty());
        assert_eq!(redact.warning(), None);
        let keys = redact.matcher();
        // Issue #29's list, as senders spell the names.
        for name in [
            "authToken",
            "token",
            "apiKey",
            "api_key",
            "x-n8n-api-key",
            "X-N8N-API-KEY",
            "Authorization",
            "secret",
            "client_secret",
            "password",
            "access_token",
            "accessToken",
            "metaAccessToken",
            "passwordHash",
            "token_origin",
        ] {
            assert!(keys.matches(name), "{name}");
        }
        for name in ["tokenCount", "secretary", "externalKey", "key", "passwords"] {
            assert!(!keys.matches(name), "{name}");
        }
    }

    #[test]
    fn a_replacing_list_is_warned_about_naming_what_it_dropped() {
        let defaults = builtin_keys();
        // The operator's own list: two built-in keys respelled, the rest dropped, one of theirs.
        let own = settings(&["PASSWORD", "auth-token", "cpf"], &[]);
        let missing = own.missing_defaults();
        assert!(!missing.contains(&"password".to_owned()));
        assert!(!missing.contains(&"authToken".to_owned()));
        assert!(missing.contains(&"x-n8n-api-key".to_owned()));
        assert!(missing.contains(&"authorization".to_owned()));
        assert_eq!(missing.len(), defaults.len() - 2);
        let warning = own.warning().expect("a warning");
        assert!(warning.contains("`x-n8n-api-key`"), "{warning}");
        assert!(!warning.contains("`password`"), "{warning}");

        // The built-in list kept, own keys added: nothing to say, and both are redacted.
        let added = settings(
            &defaults.iter().map(String::as_str).collect::<Vec<_>>(),
            &["cpf"],
        );
        assert_eq!(added.warning(), None);
        assert!(added.matcher().matches("CPF"));
        assert!(added.matcher().matches("authToken"));
        // A built-in key listed only among the extras still counts as covered.
        let moved = settings(
            &defaults
                .iter()
                .map(String::as_str)
                .filter(|k| *k != "secret")
                .collect::<Vec<_>>(),
            &["Secret"],
        );
        assert_eq!(moved.warning(), None);
        assert_eq!(settings(&[], &[]).missing_defaults().len(), defaults.len());
    }

    #[test]
    fn keys_of_separators_alone_are_refused_by_name() {
        for (redact, key) in [
            (settings(&["token", "-"], &[]), "redact.keys[1]"),
            (settings(&["token"], &["cpf", ""]), "redact.extra_keys[1]"),
            (settings(&["token"], &["_-_"]), "redact.extra_keys[0]"),
        ] {
            let err = redact.validate().expect_err("refused");
            assert!(err.to_string().contains(key), "{err}");
        }
        assert!(settings(&["token"], &["cpf"]).validate().is_ok());
    }
}
