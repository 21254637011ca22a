//! Integration tests: one binary, a real relay on port 0, a real RabbitMQ.

mod cli;
mod delivery;
mod helpers;
mod ingest;
mod proxy;
mod resilience;
