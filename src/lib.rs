//! whaticket-relay: Whaticket webhooks in, verified, deduplicated, durable, out to RabbitMQ.

pub mod config;
pub mod event;
pub mod publish;
pub mod redact;
pub mod store;
pub mod verify;

pub mod admin;
pub mod app;
pub mod cli;
pub mod error;
pub mod handover;
pub mod ingest;
pub mod metrics;
pub mod ops;
pub mod ops_cli;
pub mod reload;
mod signals;
pub mod telemetry;

pub use app::Application;
pub use config::Settings;
pub use publish::topology;
