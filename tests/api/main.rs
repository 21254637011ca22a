//! Integration tests: one binary, a real relay on port 0, a real RabbitMQ.

mod balance;
mod cli;
mod cluster;
mod contract;
mod delivery;
mod deploy;
mod failover;
mod faults;
mod first_run;
mod helpers;
mod hostile;
mod ingest;
mod load;
mod monitoring;
mod ops;
mod privacy;
mod properties;
mod proxy;
mod publish;
mod resilience;
mod senders;
mod soak;
mod standard_webhooks;
mod status_page;
mod zero_downtime;
