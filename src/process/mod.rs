//! The process around the relay: signals, hand-over to a successor, config reload, logging, the
//! allocator's settings.

pub mod handover;
mod log_writer;
pub mod memory;
pub mod reload;
pub(crate) mod signals;
pub mod telemetry;
pub mod umask;
