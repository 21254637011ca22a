//! whaticket-relay: Whaticket webhooks in, verified, deduplicated, durable, out to RabbitMQ.
//!
//! The path of one webhook, and the module that owns each step:
//!
//! ```text
//! http      POST /hooks/{connection}[/{token}]: routes, connection slots, credentials from the
//!   │       head then the body (verify), body limits, the one mapping of errors to statuses;
//!   │       health, readiness; /metrics on a listener of its own
//!   ▼
//! event     pure: the raw bytes parsed once → kind, ids, dedup key, redacted body
//!   ▼
//! store     group-committed to disk (fsync before the 202), dedup keys, dead letters, replay
//!   ▼
//! publish   confirmed publishes to RabbitMQ, per-ticket order, reconnects (topology: queues)
//! ```
//!
//! Beside the path: `ops` (admin API and status page, offline commands, their HTTP client, the
//! throttle on guessing its token), `process` (signals, hand-over, config reload, logging, the
//! umask), `config` (typed, layered settings), `metrics` (a leaf the others count into, with the
//! status page's per-minute history), `report` (errors and refusals as log lines), `app` (wires
//! it all into one [`Application`]) and `cli` (the command line).

pub mod config;
pub mod event;
pub mod publish;
pub mod store;

pub mod app;
pub mod cli;
pub mod clock;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod process;
pub mod report;

pub use app::Application;
pub use config::Settings;
