//! Parse benchmark: ns and heap allocations per `event::parse` on each fixture at realistic sizes,
//! beside serde_json's own validation of the same bytes (the floor a validating parse stands on).
//!
//! `cargo bench --bench parse`. CPU only: no HTTP, no store, no broker. Each fixture is parsed as
//! padded to ~1.5 KB and to ~18 KB (Whaticket bodies grow with the ticket's contact and tags), plus
//! one ~300 KB message carrying a base64 blob (forks that send media inline) and one n8n envelope.
//! Allocations are counted by a wrapper around the system allocator installed in this binary only.
//!
//! Environment: `PARSE_BENCH_MILLIS` (time per case, default 300); `PARSE_BENCH_ITERS` (a fixed
//! count of parses per case instead, for instruction counts under
//! `valgrind --tool=callgrind --toggle-collect='*measure*'`); `PARSE_BENCH_CASE` (only the cases
//! whose name contains it); `PARSE_BENCH_BODY=cloudevents` (parse as a connection publishing
//! CloudEvents does: the facts recorded in the same pass and the envelope built; default raw).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use whaticket_relay::config::Settings;
use whaticket_relay::event::{self, BodyMode, CustomRules, Event, ParseError, RedactKeys};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counters have no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Every `tests/fixtures/*.json`, by file stem, in name order.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("tests/fixtures is readable")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_stem()?.to_str()?.to_owned();
            (path.extension()? == "json").then_some(())?;
            Some((name, std::fs::read(&path).ok()?))
        })
        .collect();
    found.sort();
    found
}

/// `body` with a trailing `"contactHistory"` member of Whaticket-like rows until it reaches `size`
/// bytes: the shape (many small objects and strings) is what costs a parser, not one long string.
fn padded(body: &[u8], size: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let Some(end) = text.rfind('}') else {
        return body.to_vec();
    };
    if body.len() >= size {
        return body.to_vec();
    }
    let mut out = text[..end].trim_end().to_owned();
    out.push_str(",\n  \"contactHistory\": [");
    let mut row = 0;
    while out.len() + 3 < size {
        if row > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"id":{row},"name":"Contato {row}","number":"55119890{row:05}","updatedAt":"2023-10-12T14:07:44.618Z","isGroup":false}}"#
        ));
        row += 1;
    }
    out.push_str("]\n}");
    out.into_bytes()
}

/// A message with an inline base64 media blob of about `size` bytes.
fn with_blob(body: &[u8], size: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let blob: String = (0..size)
        .map(|i| ALPHABET[(i * 7 + i / 64) % 64] as char)
        .collect();
    let text = String::from_utf8_lossy(body);
    let start = text.find('{').map_or(0, |i| i + 1);
    format!("{{\"mediaBase64\": \"{blob}\",{}", &text[start..]).into_bytes()
}

fn n8n(inner: &[u8]) -> Vec<u8> {
    let mut out = br#"{"headers":{"host":"n8n","content-type":"application/json"},"params":{},"query":{},"body":"#.to_vec();
    out.extend_from_slice(inner);
    out.extend_from_slice(
        br#","webhookUrl":"https://n8n.example.com/webhook/x","executionMode":"production"}"#,
    );
    out
}

struct Figures {
    ns: f64,
    allocations: f64,
    bytes: f64,
}

/// How long each case runs.
#[derive(Clone, Copy)]
enum Budget {
    Time(Duration),
    Parses(u64),
}

/// The parse the relay runs for a connection whose body mode is `mode`.
fn parse(raw: Bytes, keys: &RedactKeys, mode: BodyMode) -> Result<Event, ParseError> {
    event::parse_with("bench", raw, keys, &CustomRules::default(), 0, None, mode)
}

#[inline(never)]
fn measure(body: &[u8], keys: &RedactKeys, mode: BodyMode, budget: Budget) -> Figures {
    let raw = Bytes::from(body.to_vec());
    // Once outside the counters: the first clone of a `Bytes` made from a Vec shares it (one
    // allocation the relay pays per request anyway, not per parse).
    let _ = parse(raw.clone(), keys, mode);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let allocated = ALLOCATED.load(Ordering::Relaxed);
    let (ns, rounds) = repeat(budget, || {
        let event = parse(black_box(raw.clone()), keys, mode);
        black_box(&event);
    });
    let n = rounds as f64;
    Figures {
        ns,
        allocations: (ALLOCATIONS.load(Ordering::Relaxed) - allocations) as f64 / n,
        bytes: (ALLOCATED.load(Ordering::Relaxed) - allocated) as f64 / n,
    }
}

/// ns per validation of `body` by serde_json alone (`IgnoredAny`: every byte checked, nothing
/// kept), the floor under a one-pass parse that validates as serde_json does.
#[inline(never)]
fn measure_validation(body: &[u8], budget: Budget) -> f64 {
    repeat(budget, || {
        let valid = serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body));
        black_box(&valid.is_ok());
    })
    .0
}

/// Runs `once` in rounds of 16 until the budget is spent: ns per call, and the calls made.
fn repeat(budget: Budget, mut once: impl FnMut()) -> (f64, u64) {
    let mut rounds = 0u64;
    let start = Instant::now();
    let more = |rounds: u64| match budget {
        Budget::Time(budget) => start.elapsed() < budget,
        Budget::Parses(parses) => rounds < parses,
    };
    while more(rounds) {
        for _ in 0..16 {
            once();
        }
        rounds += 16;
    }
    (start.elapsed().as_nanos() as f64 / rounds as f64, rounds)
}

fn main() {
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    let budget = match number("PARSE_BENCH_ITERS") {
        Some(parses) => Budget::Parses(parses),
        None => Budget::Time(Duration::from_millis(
            number("PARSE_BENCH_MILLIS").unwrap_or(300),
        )),
    };
    let only = std::env::var("PARSE_BENCH_CASE").unwrap_or_default();
    let keys = Settings::default().redact.matcher();
    let mode = match std::env::var("PARSE_BENCH_BODY").as_deref() {
        Ok("cloudevents") => BodyMode::CloudEvents,
        _ => BodyMode::Raw,
    };
    println!("body mode: {}", mode.as_str());

    let fixtures = fixtures();
    let fixture = |name: &str| {
        fixtures
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&b"{}"[..], |(_, body)| body)
    };
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, body) in &fixtures {
        cases.push((format!("{name} ~1.5KB"), padded(body, 1_500)));
    }
    for (name, body) in &fixtures {
        cases.push((format!("{name} ~18KB"), padded(body, 18_000)));
    }
    cases.push((
        "message-from-internal n8n ~18KB".to_owned(),
        n8n(&padded(fixture("message-from-internal"), 18_000)),
    ));
    cases.push((
        "message-from-me base64 ~300KB".to_owned(),
        with_blob(fixture("message-from-me"), 300_000),
    ));

    println!(
        "{:<36} {:>8} {:>10} {:>9} {:>10} {:>9} {:>12}",
        "case", "bytes", "ns/parse", "MB/s", "allocs", "B alloc", "serde_json ns"
    );
    let (mut total_ns, mut total_bytes, mut measured) = (0.0, 0.0, 0);
    for (name, body) in cases.iter().filter(|(name, _)| name.contains(&only)) {
        if parse(Bytes::from(body.clone()), &keys, mode).is_err() {
            println!("{name}: does not parse, skipped");
            continue;
        }
        let f = measure(body, &keys, mode, budget);
        let validation_ns = measure_validation(body, budget);
        total_ns += f.ns;
        measured += 1;
        total_bytes += body.len() as f64;
        println!(
            "{:<36} {:>8} {:>10.0} {:>9.1} {:>10.1} {:>9.0} {:>12.0}",
            name,
            body.len(),
            f.ns,
            body.len() as f64 / f.ns * 1e3,
            f.allocations,
            f.bytes,
            validation_ns
        );
    }
    println!(
        "all cases: {:.1} MB/s over {} cases",
        total_bytes / total_ns * 1e3,
        measured
    );
}
