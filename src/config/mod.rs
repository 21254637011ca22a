//! Typed, layered settings: built-in defaults → TOML file → `RELAY__…` environment, validated once.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::event::BodyMode;

mod amqp;
mod error;
pub mod first_run;
mod redact;
mod rules;
mod secret;
pub use amqp::{AmqpSettings, QueueType};
pub use error::ConfigError;
use error::{hide_secret_values, invalid};
pub use redact::RedactSettings;
pub use rules::{compile as compile_rules, RuleSettings};
pub use secret::{decode_secret, AmqpUrl, Secret, SecretError};

/// The file used when no `--config` is given (relative to the working directory).
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub amqp: AmqpSettings,
    pub redact: RedactSettings,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub admin: AdminSettings,
    pub connections: Vec<ConnectionSettings>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    pub max_body_bytes: usize,
    pub workers: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Open client connections the listener holds at once, across all workers.
    pub max_connections: usize,
    /// Time a client gets to send each request head, and again its whole body.
    #[serde(with = "humantime_serde")]
    pub client_timeout: Duration,
    /// How long an idle connection is kept open between requests.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Bytes of bodies read before their sender is authenticated, across all requests.
    pub unauthenticated_body_bytes: usize,
}

/// `GET /metrics` on a listener of its own: never on the public webhook listener.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// `None` (`"off"` in the file): no metrics listener.
    #[serde(with = "off_or_address")]
    pub bind: Option<SocketAddr>,
}

/// An address, or `"off"` for none: TOML has no null, and a layer must be able to turn the
/// default listener off.
mod off_or_address {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        text.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom("expected an address such as 127.0.0.1:9464, or \"off\"")
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub path: PathBuf,
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    pub cache_capacity_bytes: u64,
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How long delivered events are kept for `replay`; zero keeps none.
    #[serde(with = "humantime_serde")]
    pub keep_delivered: Duration,
    /// Cap on the kept delivered events; the oldest go first beyond it.
    pub keep_delivered_max_bytes: u64,
    /// Events waiting for the broker beyond which webhooks are answered 503.
    pub max_outbox: usize,
    /// Bytes waiting for the broker beyond which webhooks are answered 503.
    pub max_outbox_bytes: u64,
    /// Size at which the active segment file is closed and a new one started.
    pub segment_bytes: u64,
}

/// The operators' API on its own listener, for the CLI against a running relay.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub bind: SocketAddr,
    /// Bearer token of the admin API; `None` (unset): no admin listener.
    #[serde(default)]
    pub token: Option<Secret>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    pub name: String,
    #[serde(default)]
    pub tokens: Vec<Secret>,
    #[serde(default)]
    pub hmac_secrets: Vec<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<i64>,
    /// Classification rules for a sender the relay does not know yet; checked before the
    /// built-in ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleSettings>,
    /// This connection's `amqp.body`; unset: `amqp.body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyMode>,
}

impl ConnectionSettings {
    /// The body this connection's events are published with.
    pub fn body_mode(&self, amqp: &AmqpSettings) -> BodyMode {
        self.body.unwrap_or(amqp.body)
    }
}

/// `config/default.toml`, built in: the bottom layer, so every key has a default even when the
/// relay runs away from its checkout.
/// Smallest `storage.segment_bytes`: below it, per-file overhead dominates.
const MIN_SEGMENT_BYTES: u64 = 1024 * 1024;

pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

impl Default for Settings {
    fn default() -> Self {
        // A constant of this crate; `builtin_defaults_parse` keeps it valid.
        Figment::from(Toml::string(DEFAULT_TOML))
            .extract()
            .expect("config/default.toml (built in) is a valid configuration")
    }
}

/// Tokens travel in URL paths: URL-safe characters only, and long enough not to be guessed.
pub(crate) fn is_url_safe_token(token: &str) -> bool {
    token.len() >= 8
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

impl Settings {
    /// Loads the layers and validates the result.
    ///
    /// The built-in copy of `config/default.toml` is the bottom layer. With `file = None`, the
    /// `config/default.toml` in the working directory is read over it when it exists.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(file, Env::prefixed("RELAY__").split("__"))
    }

    /// As [`Settings::load`], with the environment layer given (tests use an isolated one).
    pub fn load_from(file: Option<&Path>, env: Env) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::MissingFile(path.to_owned()));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                if default.exists() {
                    figment = figment.merge(Toml::file(default));
                }
            }
        }
        // `connections` is an array of tables: a file that names it replaces the default list
        // as a whole, which is what an operator means by it.
        let settings: Settings = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(hide_secret_values(e))))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types cannot express; errors name the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_body_bytes == 0 {
            return Err(invalid("server.max_body_bytes", "must be greater than 0"));
        }
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be greater than 0"));
        }
        if self.server.client_timeout.is_zero() {
            return Err(invalid("server.client_timeout", "must be greater than 0"));
        }
        if self.server.keep_alive.is_zero() {
            return Err(invalid("server.keep_alive", "must be greater than 0"));
        }
        if self.server.unauthenticated_body_bytes < self.server.max_body_bytes {
            return Err(invalid(
                "server.unauthenticated_body_bytes",
                "must be at least server.max_body_bytes, or no signed body could be read",
            ));
        }
        // Port 0 (tests) picks a free port for each.
        if self.server.bind.port() != 0 && self.metrics.bind == Some(self.server.bind) {
            return Err(invalid(
                "metrics.bind",
                "must differ from server.bind: metrics stay off the webhook listener",
            ));
        }
        if self.storage.path.as_os_str().is_empty() {
            return Err(invalid("storage.path", "must not be empty"));
        }
        if self.storage.dedup_window.is_zero() {
            return Err(invalid("storage.dedup_window", "must be greater than 0"));
        }
        if self.storage.sweep_interval.is_zero() {
            return Err(invalid("storage.sweep_interval", "must be greater than 0"));
        }
        if self.storage.cache_capacity_bytes < 1024 * 1024 {
            return Err(invalid(
                "storage.cache_capacity_bytes",
                "must be at least 1048576",
            ));
        }
        if self.storage.max_outbox == 0 {
            return Err(invalid("storage.max_outbox", "must be greater than 0"));
        }
        if self.storage.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(invalid(
                "storage.segment_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if self.storage.max_outbox_bytes == 0 {
            return Err(invalid(
                "storage.max_outbox_bytes",
                "must be greater than 0",
            ));
        }
        self.validate_admin()?;
        self.amqp.validate()?;
        self.redact.validate()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", e.to_string()))?;
        if self.connections.is_empty() {
            return Err(invalid(
                "connections",
                "at least one [[connections]] is needed",
            ));
        }
        let mut names = HashSet::new();
        for (i, conn) in self.connections.iter().enumerate() {
            let valid_name = !conn.name.is_empty()
                && conn.name.len() <= 64
                && conn
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid_name {
                return Err(invalid(
                    format!("connections[{i}].name"),
                    "must match [A-Za-z0-9_-]{1,64}",
                ));
            }
            if !names.insert(conn.name.as_str()) {
                return Err(invalid(
                    format!("connections[{i}].name"),
                    format!("`{}` is used twice", conn.name),
                ));
            }
            // A connection without any credential is valid: `serve` gives it a generated
            // token (first_run).
            for (j, token) in conn.tokens.iter().enumerate() {
                if !is_url_safe_token(token.expose()) {
                    return Err(invalid(
                        format!("connections[{i}].tokens[{j}]"),
                        "must be at least 8 URL-safe characters ([A-Za-z0-9-_.~])",
                    ));
                }
            }
            for (j, secret) in conn.hmac_secrets.iter().enumerate() {
                if let Err(e) = decode_secret(secret.expose()) {
                    return Err(invalid(
                        format!("connections[{i}].hmac_secrets[{j}]"),
                        e.to_string(),
                    ));
                }
            }
            rules::validate(i, &conn.rules)?;
        }
        Ok(())
    }

    fn validate_admin(&self) -> Result<(), ConfigError> {
        let Some(token) = &self.admin.token else {
            return Ok(());
        };
        let token = token.expose();
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "admin.token",
                "must be at least 16 printable ASCII characters",
            ));
        }
        // Admin endpoints must never open with a webhook credential.
        let reused = self.connections.iter().any(|c| {
            c.tokens
                .iter()
                .chain(&c.hmac_secrets)
                .any(|t| t.expose() == token)
        });
        if reused {
            return Err(invalid(
                "admin.token",
                "must differ from every connection token and hmac secret",
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Env {
        Env::prefixed("RELAY_TEST_UNUSED_PREFIX__").split("__")
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn builtin_defaults_parse() {
        let s = Settings::default();
        assert_eq!(s.storage.dedup_window, Duration::from_secs(24 * 3600));
        assert_eq!(s.amqp.queue_type, QueueType::Quorum);
        // No token shipped: `serve` generates one on the first start (first_run).
        assert_eq!(s.connections[0].name, "default");
        assert!(s.connections[0].tokens.is_empty());
        s.validate().unwrap();
    }

    #[test]
    fn a_file_may_set_only_some_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "[storage]\ndedup_window = \"2h\"\n");
        let s = Settings::load_from(Some(&path), no_env()).unwrap();
        assert_eq!(s.storage.dedup_window, Duration::from_secs(7200));
        assert_eq!(s.amqp.exchange, "whaticket");
    }

    #[test]
    // figment's `Jail` closure returns its own (large) error type; nothing here to box.
    #[allow(clippy::result_large_err)]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "[amqp]\nexchange = \"from-file\"\n");
        figment::Jail::expect_with(|jail| {
            jail.set_env("RELAY__AMQP__EXCHANGE", "from-env");
            jail.set_env("RELAY__STORAGE__DEDUP_WINDOW", "30s");
            let s = Settings::load(Some(&path)).unwrap();
            assert_eq!(s.amqp.exchange, "from-env");
            assert_eq!(s.storage.dedup_window, Duration::from_secs(30));
            Ok(())
        });
    }

    #[test]
    fn the_metrics_listener_is_on_loopback_by_default_and_can_be_turned_off() {
        let s = Settings::default();
        assert_eq!(s.metrics.bind, Some(([127, 0, 0, 1], 9464).into()));
        assert_ne!(s.metrics.bind, Some(s.server.bind));
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "[metrics]\nbind = \"off\"\n");
        let s = Settings::load_from(Some(&path), no_env()).unwrap();
        assert_eq!(s.metrics.bind, None);
        // Written back as the file spells it (check-config prints the effective config).
        assert!(s.to_masked_toml().unwrap().contains("bind = \"off\""));
    }

    #[test]
    fn invalid_values_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[server]\nbind = \"nope\"\n", "server.bind"),
            ("[amqp]\nqueue_type = \"stream\"\n", "queue_type"),
            ("[storage]\ndedup_window = \"soon\"\n", "dedup_window"),
            ("[storage]\nsegment_bytes = 4096\n", "storage.segment_bytes"),
            ("[[connections]]\nname = \"bad name\"\ntokens = [\"abcdefgh\"]\n", "connections[0].name"),
            ("[[connections]]\nname = \"a\"\ntokens = [\"short\"]\n", "connections[0].tokens[0]"),
            (
                "[[connections]]\nname = \"a\"\ntokens = [\"abcdefgh\"]\n[[connections]]\nname = \"a\"\ntokens = [\"abcdefgh\"]\n",
                "connections[1].name",
            ),
            ("[amqp]\nurl = \"http://x\"\n", "amqp.url"),
            (
                "[amqp]\nurls = [\"amqp://a:5672\", \"amqp//b\"]\n",
                "amqp.urls[1]",
            ),
            (
                "[amqp]\nurls = [\"amqp://u:p@a\", \"amqp://v:q@a:5672/other\"]\n",
                "amqp.urls[1]",
            ),
            ("[amqp]\nbody = \"xml\"\n", "amqp.body"),
            (
                "[[connections]]\nname = \"a\"\ntokens = [\"abcdefgh\"]\nbody = \"CloudEvents\"\n",
                "connections.0.body",
            ),
            ("[amqp]\nquorum_initial_group_size = 0\n", "amqp.quorum_initial_group_size"),
            (
                "[amqp]\nqueue_type = \"classic\"\nquorum_initial_group_size = 3\n",
                "amqp.quorum_initial_group_size",
            ),
            (
                "[[connections]]\nname = \"a\"\ntokens = [\"abcdefgh\"]\n[[connections.rules]]\npointer = \"/t\"\nkind = \"message\"\n[[connections.rules]]\npointer = \"evento\"\nkind = \"message\"\n",
                "connections[0].rules[1].pointer",
            ),
            (
                "[[connections]]\nname = \"a\"\ntokens = [\"abcdefgh\"]\n[[connections.rules]]\npointer = \"/t\"\nkind = \"ticket\"\n",
                "connections[0].rules[0].kind",
            ),
            (
                "[[connections]]\nname = \"a\"\ntokens = [\"abcdefgh\"]\n[[connections.rules]]\npointer = \"/t\"\nkind = \"status\"\ntime = \"/a~2\"\n",
                "connections[0].rules[0].time",
            ),
            (
                "[[connections]]\nname = \"a\"\ntokens = [\"abcdefgh\"]\n[[connections.rules]]\npointer = \"/t\"\nkind = \"status\"\nwhen = \"x\"\n",
                "when",
            ),
            ("[server]\nunknown_key = 1\n", "unknown_key"),
            ("[server]\nkeep_alive = \"0s\"\n", "server.keep_alive"),
            (
                "[server]\nmax_body_bytes = 2000\nunauthenticated_body_bytes = 1000\n",
                "server.unauthenticated_body_bytes",
            ),
            ("[metrics]\nbind = \"nowhere\"\n", "metrics.bind"),
            (
                "[server]\nbind = \"0.0.0.0:8080\"\n[metrics]\nbind = \"0.0.0.0:8080\"\n",
                "metrics.bind",
            ),
        ];
        for (text, key) in cases {
            let path = write(&dir, text);
            let err = Settings::load_from(Some(&path), no_env())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key),
                "error for {text:?} should name {key}: {err}"
            );
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure returns figment's error
    fn urls_replace_url_and_name_their_nodes() {
        let s = Settings::default();
        assert_eq!(s.amqp.nodes(), std::slice::from_ref(&s.amqp.url));
        assert_eq!(s.amqp.nodes()[0].node(), "127.0.0.1:5672");
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "RELAY__AMQP__URLS",
                r#"["amqp://relay:pw1@rabbit-0.internal/%2f", "amqp://relay:pw2@[::1]:5700/%2f"]"#,
            );
            jail.set_env("RELAY__AMQP__QUORUM_INITIAL_GROUP_SIZE", "3");
            let s = Settings::load_from(None, Env::prefixed("RELAY__").split("__"))
                .map_err(|e| e.to_string())?;
            let nodes: Vec<String> = s.amqp.nodes().iter().map(AmqpUrl::node).collect();
            assert_eq!(nodes, ["rabbit-0.internal:5672", "[::1]:5700"]);
            assert_eq!(s.amqp.quorum_initial_group_size, Some(3));
            Ok(())
        });
    }

    #[test]
    fn secrets_never_print() {
        let mut s = Settings::default();
        s.amqp.url = AmqpUrl::new("amqp://user:hunter2-pass@broker:5672/%2f");
        s.amqp.urls = vec![AmqpUrl::new("amqp://user:hunter3-pass@broker-1:5672/%2f")];
        s.connections[0].tokens = vec![Secret::new("tok-supersecret-1")];
        s.connections[0].hmac_secrets = vec![Secret::new("hmac-supersecret-2")];
        let debug = format!("{s:?}");
        let toml = s.to_masked_toml().unwrap();
        for text in [&debug, &toml] {
            assert!(!text.contains("hunter2-pass"), "{text}");
            assert!(!text.contains("hunter3-pass"), "{text}");
            assert!(!text.contains("tok-supersecret-1"), "{text}");
            assert!(!text.contains("hmac-supersecret-2"), "{text}");
        }
        assert!(toml.contains("amqp://user:***@broker:5672/%2f"), "{toml}");
    }
}
