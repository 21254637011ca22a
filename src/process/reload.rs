//! Config reload without restart (SIGHUP): connections, tokens, secrets, classification rules
//! and redaction keys are swapped atomically; an invalid config is refused and the one in force stays.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::web;

use crate::config::{ConfigError, Settings};
use crate::http::ingest::{Ingest, Rules, RulesError};
use crate::report::chain;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot load the new configuration")]
    Config(#[from] ConfigError),
    #[error("invalid connection secret or rule in the new configuration")]
    Rules(#[from] RulesError),
}

/// What a successful reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// Connections in force now.
    pub connections: usize,
    /// Changed keys that only take effect after a restart (`server.bind`, `storage.path`, …).
    pub needs_restart: Vec<String>,
}

/// Reloads the running relay's config; cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle {
    inner: Arc<Inner>,
}

struct Inner {
    ingest: web::Data<Ingest>,
    /// Where the config came from (`None`: the default lookup, as `serve` without `--config`).
    source: Option<PathBuf>,
    /// The settings in force; serializes reloads.
    current: Mutex<Settings>,
}

impl ReloadHandle {
    pub(crate) fn new(
        ingest: web::Data<Ingest>,
        source: Option<PathBuf>,
        current: Settings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                ingest,
                source,
                current: Mutex::new(current),
            }),
        }
    }

    /// Loads the config again from where it came from (file, then environment) and applies it.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let settings = Settings::load(self.inner.source.as_deref())?;
        self.apply(settings)
    }

    /// Validates `settings` and puts its reloadable part in force; nothing changes on error.
    pub fn apply(&self, settings: Settings) -> Result<Reloaded, ReloadError> {
        settings.validate()?;
        let rules = Rules::new(&settings)?;
        let mut current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let needs_restart = needs_restart(&current, &settings);
        self.inner.ingest.replace_rules(rules);
        current.connections = settings.connections;
        current.redact = settings.redact;
        Ok(Reloaded {
            connections: current.connections.len(),
            needs_restart,
        })
    }

    /// [`ReloadHandle::reload`], with the outcome logged (what SIGHUP does).
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(done) => {
                tracing::info!(connections = done.connections, "configuration reloaded");
                if !done.needs_restart.is_empty() {
                    tracing::warn!(
                        keys = %done.needs_restart.join(", "),
                        "configuration reload: needs restart; these changed keys take effect only after a restart"
                    );
                }
            }
            Err(err) => tracing::error!(
                error = %chain(&err),
                "configuration reload refused; the previous configuration stays in force"
            ),
        }
    }
}

/// Keys outside `connections` and `redact` that differ, named `section.key`; values are never
/// reported (some are secrets).
fn needs_restart(old: &Settings, new: &Settings) -> Vec<String> {
    let mut probe = new.clone();
    probe.connections = old.connections.clone();
    probe.redact = old.redact.clone();
    if probe == *old {
        return Vec::new();
    }
    let mut keys = Vec::new();
    if let (Ok(toml::Value::Table(a)), Ok(toml::Value::Table(b))) =
        (toml::Value::try_from(old), toml::Value::try_from(&probe))
    {
        for (section, value) in &a {
            match (value, b.get(section)) {
                (toml::Value::Table(x), Some(toml::Value::Table(y))) => {
                    for (key, v) in x {
                        if y.get(key) != Some(v) {
                            keys.push(format!("{section}.{key}"));
                        }
                    }
                    keys.extend(
                        y.keys()
                            .filter(|k| !x.contains_key(*k))
                            .map(|k| format!("{section}.{k}")),
                    );
                }
                (v, other) if other != Some(v) => keys.push(section.clone()),
                _ => {}
            }
        }
    }
    // Serialized masked, a password change is invisible above.
    for (key, changed) in [
        ("amqp.url", old.amqp.url != new.amqp.url),
        ("amqp.urls", old.amqp.urls != new.amqp.urls),
    ] {
        if changed && !keys.iter().any(|k| k == key) {
            keys.push(key.to_owned());
        }
    }
    if keys.is_empty() {
        keys.push("a masked secret".to_owned());
    }
    keys
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn needs_restart_names_changed_keys_outside_connections_and_redact() {
        let old = Settings::default();
        let mut new = old.clone();
        new.connections[0].tokens = vec![crate::config::Secret::new("another-token-1")];
        new.redact.keys.push("cpf".to_owned());
        assert!(needs_restart(&old, &new).is_empty());

        new.server.bind = ([127, 0, 0, 1], 9999).into();
        new.storage.path = PathBuf::from("elsewhere");
        assert_eq!(
            needs_restart(&old, &new),
            vec!["server.bind", "storage.path"]
        );

        let mut password = old.clone();
        password.amqp.url = crate::config::AmqpUrl::new("amqp://guest:other@127.0.0.1:5672/%2f");
        assert_eq!(needs_restart(&old, &password), vec!["amqp.url"]);
    }
}
