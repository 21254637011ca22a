//! The figures out: the printed table with the targets' verdicts, and target/bench/relay.json.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{json, Value};

use crate::process::target_dir;
use crate::targets::{at, over_rounds, Over};

pub fn write_json(figures: &Value, name: &str) -> Result<PathBuf> {
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
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
        "  end-to-end confirmed/s",
        Cell::Num("durable_limit/confirmed_per_sec_end_to_end"),
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
        "  steady: 202 p50/p99/max (ms)",
        Cell::Latency("durable_limit/steady/latency_202_from_schedule"),
    ),
    (
        "  send→delivered p50/p99/max (ms)",
        Cell::Latency("durable_limit/steady/send_to_delivered"),
    ),
    (
        "  steady: busiest s, MB broker / disk",
        Cell::Nums(&[
            "durable_limit/steady/disk_writes/broker_busiest_second_mb",
            "durable_limit/steady/disk_writes/device_busiest_second_mb",
        ]),
    ),
    (
        "limit, relay's message contract: acc./s",
        Cell::Num("durable_limit_relay_contract/accepted_per_sec"),
    ),
    (
        "  ÷ bare limit accepted/s",
        Cell::Num("vs_durable_limit_relay_contract/limit_throughput_ratio_to_bare"),
    ),
    (
        "  all confirmed after load (s)",
        Cell::Num("durable_limit_relay_contract/all_confirmed_after_load_secs"),
    ),
    (
        "  end-to-end confirmed/s",
        Cell::Num("durable_limit_relay_contract/confirmed_per_sec_end_to_end"),
    ),
    (
        "  CPU µs/event: limit, broker, load",
        Cell::Nums(&[
            "durable_limit_relay_contract/cpu_us_per_event/durable_limit",
            "durable_limit_relay_contract/cpu_us_per_event/broker",
            "durable_limit_relay_contract/cpu_us_per_event/load_generator",
        ]),
    ),
    (
        "saturation: accepted/s",
        Cell::Num("saturation/accepted_per_sec"),
    ),
    (
        "  events, seconds of load",
        Cell::Nums(&["saturation/requests", "saturation/load_secs"]),
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
        "  ÷ limit with the contract, accepted/s",
        Cell::Num("vs_durable_limit_relay_contract/throughput_ratio"),
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
        "  end-to-end ÷ limit's, bare / contract",
        Cell::Nums(&[
            "vs_durable_limit/end_to_end_ratio",
            "vs_durable_limit_relay_contract/end_to_end_ratio",
        ]),
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
        "  ÷ limit's with the contract",
        Cell::Num("vs_durable_limit_relay_contract/cpu_per_event_ratio"),
    ),
    (
        "steady: 202 p50/p99/max (ms)",
        Cell::Latency("steady/latency_202_from_schedule"),
    ),
    (
        "  send→delivered p50/p99/max (ms)",
        Cell::Latency("steady/send_to_delivered"),
    ),
    (
        "  busiest s, MB broker / disk",
        Cell::Nums(&[
            "steady/disk_writes/broker_busiest_second_mb",
            "steady/disk_writes/device_busiest_second_mb",
        ]),
    ),
    (
        "  MB written in all: broker / disk",
        Cell::Nums(&[
            "steady/disk_writes/broker_written_mb",
            "steady/disk_writes/device_written_mb",
        ]),
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
    (
        "skewed backlog: drain uniform/skewed (s)",
        Cell::Nums(&[
            "skewed_backlog/uniform/drain_secs",
            "skewed_backlog/skewed/drain_secs",
        ]),
    ),
    (
        "  others done: skewed / alone (s)",
        Cell::Nums(&[
            "skewed_backlog/skewed/others_done_secs",
            "skewed_backlog/others alone/others_done_secs",
        ]),
    ),
    (
        "  others done, skewed ÷ alone",
        Cell::Num("skewed_backlog/others_done_skewed_to_alone"),
    ),
    (
        "  others' last delivery: position",
        Cell::Num("skewed_backlog/skewed/others_last_position"),
    ),
    (
        "  hot ticket: events/s, ms per event",
        Cell::Nums(&[
            "skewed_backlog/skewed/hot_per_sec",
            "skewed_backlog/skewed/hot_ms_per_event",
        ]),
    ),
];

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
    let rounds = goal["rounds"].as_array().map_or(&[][..], Vec::as_slice);
    let each = if rounds.len() > 1 {
        let each: Vec<String> = rounds.iter().map(num).collect();
        format!(" ({})", each.join(", "))
    } else {
        String::new()
    };
    format!(
        "{} {op} {} {verdict}{each}",
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
    let rounds = figures["rounds"].as_u64().unwrap_or(1);
    if rounds > 1 {
        for (label, size) in &sizes {
            println!(
                "({label}: the table shows round {} of {rounds}, the median by throughput ratio)",
                num(&size["shown_round"])
            );
        }
        println!(
            "\ntargets (issues #10, #31), median of {rounds} rounds (worst for memory and disk; each round in brackets):"
        );
    } else {
        println!("\ntargets (issues #10, #31):");
    }
    let count = sizes
        .first()
        .and_then(|(_, s)| s["goals"].as_array())
        .map_or(0, Vec::len);
    for i in 0..count {
        let name = sizes[0].1["goals"][i]["goal"].as_str().unwrap_or("?");
        // Wider than the table's columns: a verdict carries each round's figure too.
        print!("{:<38}", format!("  {name}"));
        for (_, size) in &sizes {
            print!("{:>44}", judged(&size["goals"][i]));
        }
        println!();
    }
    println!("\nthe durable limit's figures and the broker's disk writes, same rounds (not targets: what the machine allows):");
    for (name, path) in YARDSTICKS {
        print!("{:<38}", format!("  {name}"));
        for (_, size) in &sizes {
            print!("{:>44}", over_each_round(size, path));
        }
        println!();
    }
}

/// Figures of the durable limit beside the relay's latency targets, judged by nothing: what
/// the disk and the broker allow at that rate in the same round.
const YARDSTICKS: &[(&str, &str)] = &[
    (
        "limit's steady 202 p99 (ms)",
        "durable_limit/steady/latency_202_from_schedule/p99_ms",
    ),
    (
        "limit's steady send→delivered p99 (ms)",
        "durable_limit/steady/send_to_delivered/p99_ms",
    ),
    // A quorum-queue WAL rollover writes a few hundred MB in a second (benches/relay/disk.rs).
    (
        "broker's busiest s, relay steady (MB)",
        "steady/disk_writes/broker_busiest_second_mb",
    ),
    (
        "broker's busiest s, limit steady (MB)",
        "durable_limit/steady/disk_writes/broker_busiest_second_mb",
    ),
];

/// The median over a size's rounds of the figure at `path`, each round in brackets.
fn over_each_round(size: &Value, path: &str) -> String {
    let rounds = size["rounds"].as_array().map_or(&[][..], Vec::as_slice);
    let values: Vec<Option<f64>> = rounds.iter().map(|r| at(r, path).as_f64()).collect();
    let median = over_rounds(&values, Over::Median, true);
    let each: Vec<String> = rounds.iter().map(|r| num(at(r, path))).collect();
    format!(
        "{} ({})",
        median.map_or("-".to_owned(), |m| num(&json!(m))),
        each.join(", ")
    )
}
