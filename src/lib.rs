//! whaticket-relay: Whaticket webhooks in, verified, deduplicated, durable, out to RabbitMQ.

pub mod config;
pub mod event;
pub mod publisher;
pub mod redact;
pub mod store;
pub mod topology;
pub mod verify;
