//! The targets, and how each is judged over a size's rounds: met or not.

use serde_json::{json, Value};

/// How a target's figure is taken over the rounds: speed and latency from the median round,
/// since one run's ratios move by a third here; memory and disk from the worst, as a bound.
#[derive(Clone, Copy)]
pub enum Over {
    Median,
    Worst,
}

/// A target from issues #10 and #31: the figure at `path` in each round's figures, `at_most` or at least
/// `limit` (the steady 202 p99's limit depends on the size, so it is given apart).
struct Target {
    name: &'static str,
    path: &'static str,
    at_most: bool,
    limit: Option<f64>,
    over: Over,
}

/// The throughput ratio's path: its median round is the one the table shows.
const THROUGHPUT: &str = "vs_durable_limit/throughput_ratio";

const TARGETS: &[Target] = &[
    Target {
        name: "relay ÷ durable limit accepted/s",
        path: THROUGHPUT,
        at_most: false,
        limit: Some(0.75),
        over: Over::Median,
    },
    Target {
        name: "relay ÷ durable limit CPU/event",
        path: "vs_durable_limit/cpu_per_event_ratio",
        at_most: true,
        limit: Some(1.5),
        over: Over::Median,
    },
    Target {
        name: "steady 202 p99 (ms)",
        path: "steady/latency_202_from_schedule/p99_ms",
        at_most: true,
        limit: None,
        over: Over::Median,
    },
    Target {
        name: "steady send→delivered p99 (ms)",
        path: "steady/send_to_delivered/p99_ms",
        at_most: true,
        limit: Some(50.0),
        over: Over::Median,
    },
    Target {
        name: "relay peak RSS (MB)",
        path: "memory_mb/peak_vmhwm",
        at_most: true,
        limit: Some(64.0),
        over: Over::Worst,
    },
    Target {
        name: "skewed backlog: others done ÷ alone",
        path: "skewed_backlog/others_done_skewed_to_alone",
        at_most: true,
        limit: Some(1.2),
        over: Over::Median,
    },
    Target {
        name: "disk per kept event ÷ body",
        path: "disk/kept_event_to_body_ratio",
        at_most: true,
        limit: Some(1.2),
        over: Over::Worst,
    },
];

/// The middle value (of the two middle ones for an even count, the less favourable), or the
/// worst. `None` if any round lacks the figure, so a round that failed to measure cannot be
/// outvoted.
pub fn over_rounds(values: &[Option<f64>], over: Over, at_most: bool) -> Option<f64> {
    let mut values: Vec<f64> = values.iter().copied().collect::<Option<_>>()?;
    // Worst first: the highest for an at-most target, the lowest otherwise.
    values.sort_by(|a, b| {
        if at_most {
            b.total_cmp(a)
        } else {
            a.total_cmp(b)
        }
    });
    match over {
        Over::Median => values.get(values.len().saturating_sub(1) / 2).copied(),
        Over::Worst => values.first().copied(),
    }
}

/// The targets for one size, judged over its rounds' figures.
fn goals(rounds: &[Value], steady_p99_ms: f64) -> Value {
    let goals = TARGETS.iter().map(|t| {
        let limit = t.limit.unwrap_or(steady_p99_ms);
        let values: Vec<Option<f64>> = rounds.iter().map(|r| at(r, t.path).as_f64()).collect();
        let value = over_rounds(&values, t.over, t.at_most);
        let met = value.map(|v| if t.at_most { v <= limit } else { v >= limit });
        json!({
            "goal": t.name,
            "value": value,
            "over_rounds": match t.over { Over::Median => "median", Over::Worst => "worst" },
            "rounds": values,
            "limit": limit,
            "at_most": t.at_most,
            "met": met,
        })
    });
    Value::Array(goals.collect())
}

/// One size's figures from its rounds: the table shows the round the throughput verdict was
/// taken from (the first, if a round lacks the figure), every round is kept under `rounds`, and
/// the targets are judged over all of them.
pub fn combine(rounds: Vec<Value>, steady_p99_ms: f64) -> Value {
    let goals = goals(&rounds, steady_p99_ms);
    let throughput: Vec<Option<f64>> = rounds.iter().map(|r| at(r, THROUGHPUT).as_f64()).collect();
    let median = over_rounds(&throughput, Over::Median, false);
    let shown = throughput
        .iter()
        .position(|t| median.is_some() && *t == median)
        .unwrap_or(0);
    let mut figures = rounds.get(shown).cloned().unwrap_or(Value::Null);
    figures["shown_round"] = json!(shown + 1);
    figures["rounds"] = Value::Array(rounds);
    figures["goals"] = goals;
    figures
}

/// The figure at `path` (`a/b/c`) in one round's figures; `Null` when absent.
pub fn at<'a>(size: &'a Value, path: &str) -> &'a Value {
    path.split('/').fold(size, |v, key| &v[key])
}
