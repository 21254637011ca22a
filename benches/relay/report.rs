//! The figures out: the targets judged met or not, the printed table, target/bench/relay.json.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{json, Value};

use crate::process::target_dir;

/// A target from issue #10: `value` (null when it could not be measured) against `limit`.
fn goal(name: &str, value: &Value, at_most: bool, limit: f64) -> Value {
    let value = value.as_f64();
    let met = value.map(|v| if at_most { v <= limit } else { v >= limit });
    json!({
        "goal": name,
        "value": value,
        "limit": limit,
        "at_most": at_most,
        "met": met,
    })
}

/// The targets for one size's figures; the steady 202 p99 limit depends on the size.
pub fn goals(size: &Value, steady_p99_ms: f64) -> Value {
    json!([
        goal(
            "relay ÷ durable limit accepted/s",
            &size["vs_durable_limit"]["throughput_ratio"],
            false,
            0.75
        ),
        goal(
            "relay ÷ durable limit CPU/event",
            &size["vs_durable_limit"]["cpu_per_event_ratio"],
            true,
            1.5
        ),
        goal(
            "steady 202 p99 (ms)",
            &size["steady"]["latency_202_from_schedule"]["p99_ms"],
            true,
            steady_p99_ms
        ),
        goal(
            "steady send→delivered p99 (ms)",
            &size["steady"]["send_to_delivered"]["p99_ms"],
            true,
            50.0
        ),
        goal(
            "relay peak RSS (MB)",
            &size["memory_mb"]["peak_vmhwm"],
            true,
            64.0
        ),
        goal(
            "disk per kept event ÷ body",
            &size["disk"]["kept_event_to_body_ratio"],
            true,
            1.2
        ),
    ])
}

pub fn write_json(figures: &Value) -> Result<PathBuf> {
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("relay.json");
    std::fs::write(&path, serde_json::to_vec_pretty(figures)?)?;
    Ok(path)
}

/// How a row shows a size's figures; paths are `/`-separated keys into them.
enum Cell {
    Num(&'static str),
    /// Several numbers, " / " between them.
    Nums(&'static [&'static str]),
    /// A latency object as p50 / p99 / max.
    Latency(&'static str),
    /// An array of samples as min - max.
    MinMax(&'static str),
}

const ROWS: &[(&str, Cell)] = &[
    ("mean body (bytes)", Cell::Num("mean_body_bytes")),
    (
        "ceiling: bare lapin (msgs/s)",
        Cell::Num("ceiling_msgs_per_sec"),
    ),
    (
        "  CPU µs/msg: broker, publisher",
        Cell::Nums(&[
            "ceiling_cpu_us_per_msg/broker",
            "ceiling_cpu_us_per_msg/load_generator",
        ]),
    ),
    (
        "durable limit: accepted/s",
        Cell::Num("durable_limit/accepted_per_sec"),
    ),
    (
        "  202 p50/p99/max (ms)",
        Cell::Latency("durable_limit/latency_202"),
    ),
    (
        "  all confirmed after load (s)",
        Cell::Num("durable_limit/all_confirmed_after_load_secs"),
    ),
    (
        "  CPU µs/event: limit, broker, load",
        Cell::Nums(&[
            "durable_limit/cpu_us_per_event/durable_limit",
            "durable_limit/cpu_us_per_event/broker",
            "durable_limit/cpu_us_per_event/load_generator",
        ]),
    ),
    (
        "  peak RSS, VmHWM (MB)",
        Cell::Num("durable_limit/peak_rss_mb"),
    ),
    (
        "saturation: accepted/s",
        Cell::Num("saturation/accepted_per_sec"),
    ),
    (
        "  % of ceiling",
        Cell::Num("saturation/accepted_pct_of_ceiling"),
    ),
    (
        "  ÷ durable limit accepted/s",
        Cell::Num("vs_durable_limit/throughput_ratio"),
    ),
    (
        "  202 p50/p99/max (ms)",
        Cell::Latency("saturation/latency_202"),
    ),
    (
        "  all confirmed after load (s)",
        Cell::Num("saturation/all_confirmed_after_load_secs"),
    ),
    (
        "  end-to-end confirmed/s",
        Cell::Num("saturation/confirmed_per_sec_end_to_end"),
    ),
    (
        "  end-to-end % of ceiling",
        Cell::Num("saturation/confirmed_pct_of_ceiling"),
    ),
    (
        "  CPU µs/event: relay, broker, load",
        Cell::Nums(&[
            "saturation/cpu_us_per_event/relay",
            "saturation/cpu_us_per_event/broker",
            "saturation/cpu_us_per_event/load_generator",
        ]),
    ),
    (
        "  relay CPU/event ÷ durable limit's",
        Cell::Num("vs_durable_limit/cpu_per_event_ratio"),
    ),
    (
        "steady: 202 p50/p99/max (ms)",
        Cell::Latency("steady/latency_202_from_schedule"),
    ),
    (
        "  send→delivered p50/p99/max (ms)",
        Cell::Latency("steady/send_to_delivered"),
    ),
    ("relay RSS idle (MB)", Cell::Num("memory_mb/idle")),
    (
        "relay RSS after saturation (MB)",
        Cell::Num("memory_mb/after_saturation"),
    ),
    (
        "relay RSS during steady, min-max (MB)",
        Cell::MinMax("memory_mb/during_steady"),
    ),
    (
        "relay RSS after steady (MB)",
        Cell::Num("memory_mb/after_steady"),
    ),
    (
        "relay peak RSS, VmHWM (MB)",
        Cell::Num("memory_mb/peak_vmhwm"),
    ),
    (
        "store only: appends/s",
        Cell::Num("disk/store_only_appends_per_sec"),
    ),
    (
        "disk bytes per outbox event",
        Cell::Num("disk/bytes_per_outbox_event"),
    ),
    (
        "disk bytes per kept event after run",
        Cell::Num("disk/bytes_per_kept_event"),
    ),
    (
        "disk bytes per dedup key after run",
        Cell::Num("disk/bytes_per_dedup_key_after_run"),
    ),
];

fn at<'a>(size: &'a Value, path: &str) -> &'a Value {
    path.split('/').fold(size, |v, key| &v[key])
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 => format!("{f:.0}"),
        Some(f) => format!("{f:.2}"),
        None => "-".to_owned(),
    }
}

impl Cell {
    fn show(&self, size: &Value) -> String {
        match self {
            Cell::Num(path) => num(at(size, path)),
            Cell::Nums(paths) => paths
                .iter()
                .map(|p| num(at(size, p)))
                .collect::<Vec<_>>()
                .join(" / "),
            Cell::Latency(path) => {
                let v = at(size, path);
                format!(
                    "{} / {} / {}",
                    num(&v["p50_ms"]),
                    num(&v["p99_ms"]),
                    num(&v["max_ms"])
                )
            }
            Cell::MinMax(path) => {
                let samples: Vec<f64> = at(size, path)
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
                let max = samples.iter().copied().fold(0.0, f64::max);
                if samples.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{min:.1} - {max:.1}")
                }
            }
        }
    }
}

/// "value ≤ limit met" or "… NOT MET"; "-" when the figure is missing.
fn judged(goal: &Value) -> String {
    let op = if goal["at_most"].as_bool() == Some(true) {
        "≤"
    } else {
        "≥"
    };
    let verdict = match goal["met"].as_bool() {
        Some(true) => "met",
        Some(false) => "NOT MET",
        None => "-",
    };
    format!(
        "{} {op} {} {verdict}",
        num(&goal["value"]),
        num(&goal["limit"])
    )
}

pub fn print_table(figures: &Value) {
    let sizes: Vec<(&String, &Value)> = figures["sizes"]
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    let line = |name: &str, cell: &dyn Fn(&Value) -> String| {
        print!("{name:<38}");
        for (_, size) in &sizes {
            print!("{:>28}", cell(size));
        }
        println!();
    };
    println!();
    print!("{:<38}", "");
    for (label, _) in &sizes {
        print!("{label:>28}");
    }
    println!();
    for (name, cell) in ROWS {
        line(name, &|size| cell.show(size));
    }
    println!("\ntargets (issue #10):");
    let count = sizes
        .first()
        .and_then(|(_, s)| s["goals"].as_array())
        .map_or(0, Vec::len);
    for i in 0..count {
        let name = sizes[0].1["goals"][i]["goal"].as_str().unwrap_or("?");
        line(&format!("  {name}"), &|size| judged(&size["goals"][i]));
    }
}
