//! Disk writes during the steady phase, sampled every 250 ms: RabbitMQ's own (`/proc/<pid>/io`)
//! and the whole device's under the bench's data dirs (`/proc/diskstats`).
//!
//! Here the broker shares the one disk with the server under test. When a quorum queue's WAL
//! rolls over (every 512 MiB written by default), RabbitMQ writes a few hundred MB within a
//! second, and every fdatasync on the device waits behind that burst. The busiest second of the
//! phase tells a steady tail caused by that apart from one of the server's own.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::process::Periodic;

const TICK: Duration = Duration::from_millis(250);
/// Ticks in the window the busiest figures are summed over (one second).
const WINDOW: usize = 4;

/// Cumulative counters at one tick; `None` where a counter cannot be read.
#[derive(Clone, Copy)]
pub struct Sample {
    broker_bytes: Option<u64>,
    /// Sectors written (512 bytes each) and milliseconds spent writing, summed over requests.
    device: Option<(u64, u64)>,
}

/// Starts sampling the broker (`broker`, when local) and the device holding `dir`.
pub fn start(broker: Option<u32>, dir: &Path) -> Periodic<Sample> {
    let device = std::fs::metadata(dir).ok().map(|m| dev_numbers(m.dev()));
    Periodic::start(TICK, move || {
        Some(Sample {
            broker_bytes: broker.and_then(written_by),
            device: device.and_then(device_writes),
        })
    })
}

/// Megabytes written in all and in the busiest second, by the broker and by the device, and the
/// device's busiest second of write wait (seconds of requests in flight per second: above 1 the
/// writes queue).
pub fn summary(samples: &[Sample]) -> Value {
    let broker: Vec<Option<u64>> = samples.iter().map(|s| s.broker_bytes).collect();
    let sectors: Vec<Option<u64>> = samples.iter().map(|s| s.device.map(|d| d.0)).collect();
    let wait_ms: Vec<Option<u64>> = samples.iter().map(|s| s.device.map(|d| d.1)).collect();
    let mb = |bytes: Option<u64>| bytes.map(|b| round2(b as f64 / 1e6));
    json!({
        "broker_written_mb": mb(total(&broker)),
        "broker_busiest_second_mb": mb(busiest(&broker)),
        "device_written_mb": mb(total(&sectors).map(|s| s * 512)),
        "device_busiest_second_mb": mb(busiest(&sectors).map(|s| s * 512)),
        "device_busiest_second_write_wait_s": busiest(&wait_ms).map(|ms| round2(ms as f64 / 1e3)),
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Growth of a cumulative counter from the first sample to the last.
fn total(counter: &[Option<u64>]) -> Option<u64> {
    Some(
        counter
            .last()
            .copied()??
            .saturating_sub(counter.first().copied()??),
    )
}

/// The largest growth of a cumulative counter over [`WINDOW`] consecutive ticks (the whole run
/// when it is shorter); `None` when the counter was not read throughout.
fn busiest(counter: &[Option<u64>]) -> Option<u64> {
    let values: Option<Vec<u64>> = counter.iter().copied().collect();
    let values = values?;
    if values.len() < 2 {
        return None;
    }
    let span = WINDOW.min(values.len() - 1);
    values
        .windows(span + 1)
        .map(|w| w[span].saturating_sub(w[0]))
        .max()
}

/// Linux's encoding of a `dev_t` into its major and minor numbers.
fn dev_numbers(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
    let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
    (major, minor)
}

/// Bytes a process has caused to be written to storage so far.
fn written_by(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Sectors written and milliseconds spent writing so far on the device `major:minor`.
fn device_writes((major, minor): (u64, u64)) -> Option<(u64, u64)> {
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    stats.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
        (number(0)? == major && number(1)? == minor).then_some((number(9)?, number(10)?))
    })
}
