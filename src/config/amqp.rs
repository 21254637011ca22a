//! The broker settings: which nodes, which queues, how publishing is bounded; validated here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, AmqpUrl, ConfigError};
use crate::event::BodyMode;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Quorum,
    Classic,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    pub url: AmqpUrl,
    /// Nodes of one cluster, tried in order (the next one when the node in use is lost); when
    /// not empty, `url` is not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<AmqpUrl>,
    pub exchange: String,
    pub queue_prefix: String,
    pub queue_type: QueueType,
    /// Replicas a quorum queue starts with (`x-quorum-initial-group-size`); `None`: RabbitMQ's
    /// default, every cluster node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_initial_group_size: Option<u32>,
    /// Whether the relay declares its exchange, queues and bindings (and declares them again
    /// when the broker returns an event as unroutable). Off where the topology is managed
    /// elsewhere and the relay's user may not configure: it then only checks the exchange.
    #[serde(default = "declare_by_default")]
    pub declare_topology: bool,
    pub max_in_flight: usize,
    /// What consumers read: the sender's body (`raw`) or a CloudEvents envelope
    /// (`cloudevents`); a connection's own `body` decides for it.
    #[serde(default)]
    pub body: BodyMode,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
}

fn declare_by_default() -> bool {
    true
}

impl AmqpSettings {
    /// The broker nodes in the order they are tried: `urls`, or else `url` alone.
    pub fn nodes(&self) -> &[AmqpUrl] {
        if self.urls.is_empty() {
            std::slice::from_ref(&self.url)
        } else {
            &self.urls
        }
    }

    /// Checks what types cannot express; errors name the `amqp.…` key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let mut seen: Vec<String> = Vec::new();
        for (i, node) in self.nodes().iter().enumerate() {
            let key = self.node_key(i);
            let url = url::Url::parse(node.expose())
                .map_err(|e| invalid(key.as_str(), format!("not a URL ({e})")))?;
            if !matches!(url.scheme(), "amqp" | "amqps") {
                return Err(invalid(key, "scheme must be amqp or amqps"));
            }
            if url.scheme() == "amqps" && !cfg!(feature = "tls") {
                return Err(invalid(
                    key,
                    "amqps:// needs the relay built with the `tls` feature",
                ));
            }
            // Metrics and /readyz name the node by host:port: two entries for one node would
            // be indistinguishable there, and trying one node twice is no failover.
            let name = node.node();
            if let Some(j) = seen.iter().position(|s| *s == name) {
                return Err(invalid(key, format!("{name} is already amqp.urls[{j}]")));
            }
            seen.push(name);
        }
        match self.quorum_initial_group_size {
            Some(0) => {
                return Err(invalid(
                    "amqp.quorum_initial_group_size",
                    "must be at least 1",
                ))
            }
            Some(_) if self.queue_type != QueueType::Quorum => {
                return Err(invalid(
                    "amqp.quorum_initial_group_size",
                    "applies to quorum queues only (amqp.queue_type = \"quorum\")",
                ))
            }
            _ => {}
        }
        for (key, value) in [
            ("amqp.exchange", &self.exchange),
            ("amqp.queue_prefix", &self.queue_prefix),
        ] {
            if value.is_empty() || value.len() > 200 || value.starts_with("amq.") {
                return Err(invalid(
                    key,
                    "must be 1-200 characters and not start with `amq.`",
                ));
            }
        }
        if self.max_in_flight == 0 {
            return Err(invalid("amqp.max_in_flight", "must be greater than 0"));
        }
        if self.timeout.is_zero() {
            return Err(invalid("amqp.timeout", "must be greater than 0"));
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return Err(invalid(
                "amqp.reconnect_min",
                "must be > 0 and not above amqp.reconnect_max",
            ));
        }
        Ok(())
    }

    /// The config key naming node `i` of [`AmqpSettings::nodes`], for errors.
    fn node_key(&self, i: usize) -> String {
        if self.urls.is_empty() {
            "amqp.url".to_owned()
        } else {
            format!("amqp.urls[{i}]")
        }
    }
}
