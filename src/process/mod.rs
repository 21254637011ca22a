//! The process around the relay: signals, hand-over to a successor, config reload, logging.

pub mod handover;
pub mod reload;
pub(crate) mod signals;
pub mod telemetry;
