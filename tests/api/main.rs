//! Integration tests: one binary, a real relay on port 0, a real RabbitMQ.

mod balance;
mod cli;
mod cluster;
mod contract;
mod delivery;
mod deploy;
mod failover;
mod faults;
mod helpers;
mod hostile;
mod ingest;
mod load;
mod ops;
mod privacy;
mod properties;
mod proxy;
mod publish;
mod resilience;
mod senders;
mod soak;
mod zero_downtime;
