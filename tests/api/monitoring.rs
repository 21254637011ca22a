//! deploy/prometheus and deploy/grafana: promtool checks and unit-tests the alerting rules, every
//! alert has a test that fires it, and every metric and label their queries name is one a running
//! relay exports (and every metric it exports is on the dashboard).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, LabelModifier};
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::Value;
use whaticket_relay::config::AmqpUrl;

use crate::helpers::*;
use crate::ops::{eventually_metric, metrics, sample};

const RULES: &str = "deploy/prometheus/whaticket-relay.rules.yml";
const RULE_TESTS: [&str; 2] = [
    "deploy/prometheus/whaticket-relay.rules.test.yml",
    "deploy/prometheus/whaticket-relay.silence.test.yml",
];
const PROMETHEUS_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/whaticket-relay.json";

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn promtool(args: &[&str]) -> Output {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match output {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed; it checks deploy/prometheus/. Install Debian's package: \
             `apt-get install -y --no-install-recommends prometheus` (.ci/run does)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    }
}

fn assert_promtool(args: &[&str]) {
    let out = promtool(args);
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    assert_promtool(&["check", "rules", RULES]);
    // The example config, and through it the rule file as Prometheus would load it.
    assert_promtool(&["check", "config", PROMETHEUS_CONFIG]);
    let mut args = vec!["test", "rules"];
    args.extend(RULE_TESTS);
    assert_promtool(&args);
}

fn yaml(path: &str) -> serde_json::Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The alerting rules: name → expression.
fn alerts() -> BTreeMap<String, String> {
    let rules = yaml(RULES);
    let mut out = BTreeMap::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("only alerting rules");
            let expr = rule["expr"].as_str().expect("expr");
            assert!(
                out.insert(name.to_owned(), expr.to_owned()).is_none(),
                "{name} twice"
            );
        }
    }
    out
}

#[test]
fn every_alert_has_a_unit_test_that_fires_it_and_one_where_it_stays_quiet() {
    let mut fired = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for path in RULE_TESTS {
        let tests = yaml(path);
        for test in tests["tests"].as_array().expect("tests") {
            for case in test["alert_rule_test"].as_array().expect("alert_rule_test") {
                let name = case["alertname"].as_str().expect("alertname").to_owned();
                let firing = case["exp_alerts"].as_array().expect("exp_alerts").len();
                if firing > 0 {
                    fired.insert(name);
                } else {
                    quiet.insert(name);
                }
            }
        }
    }
    for name in alerts().keys() {
        assert!(fired.contains(name), "no unit test fires {name}");
        assert!(quiet.contains(name), "no unit test shows {name} quiet");
    }
}

/// What a query names: metric names with the labels matched on them, and labels grouped by.
#[derive(Default, Debug)]
struct Named {
    metrics: BTreeMap<String, BTreeSet<String>>,
    grouping: BTreeSet<String>,
}

impl ExprVisitor for Named {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let selector = match expr {
            Expr::VectorSelector(vs) => Some(vs),
            Expr::MatrixSelector(ms) => Some(&ms.vs),
            Expr::Aggregate(agg) => {
                if let Some(modifier) = &agg.modifier {
                    let (LabelModifier::Include(labels) | LabelModifier::Exclude(labels)) =
                        modifier;
                    self.grouping.extend(labels.labels.iter().cloned());
                }
                None
            }
            Expr::Binary(bin) => {
                if let Some(LabelModifier::Include(labels) | LabelModifier::Exclude(labels)) =
                    bin.modifier.as_ref().and_then(|m| m.matching.as_ref())
                {
                    self.grouping.extend(labels.labels.iter().cloned());
                }
                None
            }
            _ => None,
        };
        if let Some(vs) = selector {
            let mut name = vs.name.clone();
            let mut labels = BTreeSet::new();
            for matcher in &vs.matchers.matchers {
                if matcher.name == "__name__" && matcher.op == MatchOp::Equal {
                    name = Some(matcher.value.clone());
                } else {
                    labels.insert(matcher.name.clone());
                }
            }
            let name = name.ok_or_else(|| format!("selector without a metric name: {vs}"))?;
            self.metrics.entry(name).or_default().extend(labels);
        }
        Ok(true)
    }
}

fn named(origin: &str, query: &str) -> Named {
    let expr = parser::parse(query).unwrap_or_else(|e| panic!("{origin}: `{query}`: {e}"));
    let mut named = Named::default();
    walk_expr(&mut named, &expr).unwrap_or_else(|e| panic!("{origin}: {e}"));
    named
}

/// Grafana's variables replaced by what they stand for, so the query parses as PromQL.
fn expand_grafana_variables(query: &str) -> String {
    query
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$instance", ".*")
}

/// Every panel of the dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Every PromQL query of the dashboard (panel targets, and the `label_values` of variables),
/// with where it is.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().expect("title");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("target expr");
            out.push((format!("panel `{title}`"), expand_grafana_variables(expr)));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .expect("variable query");
        // label_values(<selector>, <label>): the selector is PromQL, the label one of its.
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query `{query}` is not label_values(…)"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        let label = label.trim();
        let origin = format!("variable `{}`", variable["name"]);
        out.push((origin, format!("sum by ({label}) ({selector})")));
    }
    out
}

#[test]
fn dashboard_panels_are_laid_out_and_bound_to_the_datasource_variable() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard is JSON");
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("id")),
            "id of `{title}` reused"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && w > 0,
            "`{title}` lies outside the 24 columns"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "`{title}`");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "`{title}` has no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "`{title}`");
            let expr = target["expr"].as_str().expect("expr");
            // The relay picker applies to every panel.
            assert!(
                expr.contains(r#"instance=~"$instance""#),
                "`{title}`: {expr}"
            );
        }
    }
    assert!(ids.len() > 20, "{} panels", ids.len());
}

/// Sample names in the text format, each with its label names.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).expect("sample line");
        let labels = out.entry(line[..end].to_owned()).or_default();
        if let Some(rest) = line[end..].strip_prefix('{') {
            let inner = &rest[..rest.find('}').expect("closing brace")];
            // Label values here are connection names, kinds and codes: no `,` or `=` inside.
            labels.extend(
                inner
                    .split(',')
                    .filter_map(|kv| Some(kv.split_once('=')?.0.to_owned())),
            );
        }
    }
    out
}

/// `relay_x_bucket`, `_sum`, `_count` → `relay_x`: the family a dashboard line is about.
fn family(sample: &str, families: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if families.contains(base) {
                return base.to_owned();
            }
        }
    }
    sample.to_owned()
}

#[tokio::test]
async fn dashboard_and_alerts_query_only_what_a_running_relay_exports() {
    let app = spawn_app().await;
    app.wait_ready().await;
    // Labelled series exist once counted: one of each answer.
    assert_eq!(
        app.post_hook(fixture("message-start.json")).await.status(),
        202
    );
    assert_eq!(
        app.post_hook(fixture("message-start.json")).await.status(),
        200
    );
    let refused = app.post_hook_as(CONNECTION, "wrong-token-123456", "{}");
    assert_eq!(refused.await.status(), 401);
    app.wait_outbox_empty().await;
    let text = metrics(&app).await;
    let exported = exported(&text);
    let families: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();

    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard is JSON");
    let mut queries = dashboard_queries(&dashboard);
    let on_dashboard = queries.len();
    queries.extend(
        alerts()
            .into_iter()
            .map(|(name, expr)| (format!("alert {name}"), expr)),
    );
    assert!(
        on_dashboard > 30 && queries.len() > on_dashboard + 5,
        "{queries:?}"
    );

    let mut shown = BTreeSet::new();
    for (origin, query) in &queries {
        let named = named(origin, query);
        assert!(
            !named.metrics.is_empty(),
            "{origin} names no metric: {query}"
        );
        let mut labels_here: BTreeSet<String> =
            TARGET_LABELS.iter().map(|l| l.to_string()).collect();
        for (metric, matched) in &named.metrics {
            // `up` is Prometheus's own series per target, not the relay's.
            if metric == "up" {
                assert!(origin.starts_with("alert"), "{origin} queries `up`");
                labels_here.insert("job".to_owned());
                continue;
            }
            let labels = exported.get(metric).unwrap_or_else(|| {
                panic!("{origin} queries `{metric}`, which the relay does not export:\n{text}")
            });
            for label in matched {
                assert!(
                    labels.contains(label) || TARGET_LABELS.contains(&label.as_str()),
                    "{origin}: `{metric}` has no label `{label}` (it has {labels:?})"
                );
            }
            labels_here.extend(labels.iter().cloned());
            if !origin.starts_with("alert") {
                shown.insert(family(metric, &families));
            }
        }
        for label in &named.grouping {
            assert!(
                labels_here.contains(label),
                "{origin} groups by `{label}`, which none of its metrics has: {query}"
            );
        }
    }
    let relay_families: BTreeSet<String> = families
        .iter()
        .filter(|f| f.starts_with("relay_"))
        .cloned()
        .collect();
    let missing: Vec<_> = relay_families.difference(&shown).collect();
    assert!(
        missing.is_empty(),
        "exported but on no dashboard panel: {missing:?}"
    );
}

#[tokio::test]
async fn state_gauges_follow_the_broker_the_store_limits_and_each_connection() {
    let proxy = TcpProxy::start("127.0.0.1:5672".parse::<SocketAddr>().unwrap()).await;
    let mut options = Options::new();
    options.settings.amqp.url = AmqpUrl::new(proxy.url());
    options.settings.storage.max_outbox = 1234;
    options.settings.storage.max_outbox_bytes = 5_678_900;
    let app = spawn_app_with(options).await;
    app.wait_ready().await;

    let text = metrics(&app).await;
    assert_eq!(sample(&text, "relay_broker_connected"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "relay_store_writable"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "relay_outbox_max_events"),
        Some(1234.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "relay_outbox_max_bytes"),
        Some(5_678_900.0),
        "{text}"
    );
    let last =
        format!("relay_connection_last_event_timestamp_seconds{{connection=\"{CONNECTION}\"}}");
    assert_eq!(sample(&text, &last), None, "no event yet:\n{text}");

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(
        app.post_hook(fixture("status-open.json")).await.status(),
        202
    );
    let text = metrics(&app).await;
    let stamped = sample(&text, &last).unwrap_or_else(|| panic!("no {last}:\n{text}"));
    // Stamped after the request started, to the millisecond, and not in the future.
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        before - 0.001 <= stamped && stamped <= after,
        "{before} ≤ {stamped} ≤ {after}"
    );

    proxy.cut();
    eventually_metric(&app, "relay_broker_connected", 0.0).await;
    proxy.restore();
    eventually_metric(&app, "relay_broker_connected", 1.0).await;
}
