//! Finding any event (#32): the admin API's `/admin/events…` and the `events` command, through a
//! running relay and offline on its data dir; no personal data in a list, a timeline or a table.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use whaticket_relay::event::Kind;

use crate::helpers::*;
use crate::ops::{admin_url, config_file, message_id, relay_cli, with_admin, ADMIN_TOKEN};

const TICKET: &str = "357";
const WA_ID: &str = "3EB0C431C26A1916E4A5";
/// Personal data of the message fixture: a name, a phone number, a text.
const PERSONAL: [&str; 3] = ["Rafael Ribeiro", "5511989091838", "Quero saber"];

fn assert_no_personal_data(text: &str) {
    for personal in PERSONAL {
        assert!(!text.contains(personal), "{personal} shown: {text}");
    }
}

async fn admin_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(admin_url(app, path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

/// Polls `path` until `done` holds of its JSON (the index follows within a flush, about 1 s).
async fn eventually(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = admin_get(app, path).await;
        assert_eq!(response.status(), 200, "{path}");
        let value: Value = response.json().await.unwrap();
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{path} never got there: {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `events` command's stdout as text (a table), failing on a non-zero exit.
async fn relay_cli_text(config: PathBuf, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_whaticket-relay"))
            .args(&args)
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One field (`step`, `at`) of each step of an event detail's timeline, in order.
fn timeline<'a>(detail: &'a Value, field: &str) -> Vec<&'a str> {
    detail["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("no timeline: {detail}"))
        .iter()
        .map(|s| s[field].as_str().unwrap())
        .collect()
}

fn ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events: {page}"))
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The CLI's answers to `--ticket`, `--id`, `--state dead` and `--since`, as JSON and as a table.
async fn cli_finds(config: PathBuf, message: &str, status: &str, dead: &str) {
    // The ticket's message (replayed: its copy is the newest record) and its closing.
    let ticket = relay_cli(config.clone(), &["events", "--ticket", TICKET, "--json"]).await;
    assert_eq!(ids(&ticket), [message, status], "{ticket}");
    assert_eq!(ticket["events"][0]["state"], "confirmed", "{ticket}");
    let by_wa = relay_cli(config.clone(), &["events", "--id", WA_ID, "--json"]).await;
    assert_eq!(ids(&by_wa), [message], "{by_wa}");
    let dead_ones = relay_cli(config.clone(), &["events", "--state", "dead", "--json"]).await;
    assert_eq!(ids(&dead_ones), [dead], "{dead_ones}");
    // The replayed message is listed once, as its copy: the newest record.
    let recent = relay_cli(config.clone(), &["events", "--since", "10m", "--json"]).await;
    assert_eq!(ids(&recent).len(), 3, "{recent}");
    assert_eq!(ids(&recent)[0], message, "newest first: {recent}");
    let none = relay_cli(config.clone(), &["events", "--until", "1h", "--json"]).await;
    assert!(ids(&none).is_empty(), "{none}");
    let paged = relay_cli(config.clone(), &["events", "--limit", "2", "--json"]).await;
    let cursor = paged["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let rest = relay_cli(
        config.clone(),
        &["events", "--limit", "2", "--cursor", &cursor, "--json"],
    )
    .await;
    assert_eq!(ids(&rest).len(), 1, "{rest}");
    assert!(rest["next_cursor"].is_null(), "{rest}");

    let table = relay_cli_text(config.clone(), &["events", "--ticket", TICKET]).await;
    assert!(table.starts_with("RECEIVED"), "{table}");
    assert!(table.contains(message) && table.contains(WA_ID), "{table}");
    assert!(
        table.contains("confirmed") && table.contains("2 events"),
        "{table}"
    );
    assert_no_personal_data(&table);
    let table = relay_cli_text(config.clone(), &["events", "--state", "dead"]).await;
    assert!(table.contains(dead) && table.contains("dead"), "{table}");

    // One event's detail: its timeline, the replay and both confirms in it.
    let shown = relay_cli(config.clone(), &["events", "--show", message, "--json"]).await;
    assert_eq!(shown["event_id"], message, "{shown}");
    assert!(shown["published_at"].is_string(), "{shown}");
    let steps = timeline(&shown, "step");
    for step in ["received", "stored", "published", "confirmed", "replayed"] {
        assert!(steps.contains(&step), "{step}: {shown}");
    }
    let text = relay_cli_text(config, &["events", "--show", message]).await;
    assert!(text.starts_with("EVENT"), "{text}");
    assert!(
        text.contains(message) && text.contains(WA_ID) && text.contains("TIMELINE"),
        "{text}"
    );
    assert!(
        text.contains("published") && text.contains("copy 1"),
        "{text}"
    );
    assert_no_personal_data(&text);
}

#[tokio::test]
async fn events_are_found_shown_and_replayed_through_the_admin_api_and_the_cli() {
    let app = spawn_app_with(with_admin(Options::new().topology_managed_elsewhere())).await;
    app.wait_ready().await;
    app.unbind(Kind::Other).await;
    let post = |body: Vec<u8>| {
        let app = &app;
        async move {
            let answer: Value = app.post_hook(body).await.json().await.unwrap();
            answer["id"].as_str().unwrap().to_owned()
        }
    };
    let message = post(fixture("message-from-internal.json")).await;
    let status = post(fixture("status-closed.json")).await;
    // Nobody listens to `other`: a dead letter.
    let dead = post(br#"{"acao":"nobody-listens","chamadoId":5}"#.to_vec()).await;
    let duplicate = app.post_hook(fixture("message-from-internal.json")).await;
    assert_eq!(duplicate.status(), 200);
    let delivered = app.take(&app.queue(Kind::Message)).await;
    app.take(&app.queue(Kind::Status)).await;
    app.wait_dead(1, Duration::from_secs(10)).await;

    let both = eventually(&app, &format!("/admin/events?ticket={TICKET}"), |p| {
        p["events"].as_array().is_some_and(|e| e.len() == 2)
    })
    .await;
    assert_eq!(ids(&both), [status.as_str(), message.as_str()]);
    let page = eventually(
        &app,
        &format!("/admin/events?ticket={TICKET}&kind=message"),
        |p| p["events"][0]["state"] == "confirmed" && p["events"][0]["duplicates"]["count"] == 1,
    )
    .await;
    assert_eq!(ids(&page), [message.as_str()]);
    let found = &page["events"][0];
    assert_eq!(found["ticket"], TICKET);
    assert_eq!(found["wa_id"], WA_ID);
    assert_eq!(found["kind"], "message");
    assert_eq!(found["company"], 1);
    assert_eq!(found["connection"], CONNECTION);
    assert!(found["size"].as_u64().unwrap() > 100, "{found}");
    assert!(found["duplicates"]["last_at"].is_string(), "{found}");
    assert!(page["next_cursor"].is_null());
    assert_no_personal_data(&page.to_string());

    let all = eventually(&app, "/admin/events", |p| {
        p["events"].as_array().is_some_and(|e| e.len() == 3)
    })
    .await;
    assert_eq!(
        ids(&all),
        [dead.as_str(), status.as_str(), message.as_str()]
    );
    let by_wa = admin_get(&app, &format!("/admin/events?id={WA_ID}")).await;
    assert_eq!(ids(&by_wa.json().await.unwrap()), [message.as_str()]);
    let by_event = admin_get(&app, &format!("/admin/events?event={status}")).await;
    assert_eq!(ids(&by_event.json().await.unwrap()), [status.as_str()]);
    let dead_page = eventually(&app, "/admin/events?state=dead", |p| {
        p["events"].as_array().is_some_and(|e| e.len() == 1)
    })
    .await;
    assert_eq!(ids(&dead_page), [dead.as_str()]);
    let kind = admin_get(&app, "/admin/events?kind=status&connection=nowhere").await;
    assert!(ids(&kind.json().await.unwrap()).is_empty());

    // The detail: its timeline in time order, no personal data. The publish time comes back
    // with the confirm, and reaches the index with the flusher's next take (about 1 s).
    let detail = eventually(&app, &format!("/admin/events/{message}"), |d| {
        d["published_at"].is_string()
    })
    .await;
    let steps = timeline(&detail, "step");
    assert_eq!(steps[..2], ["received", "stored"], "{detail}");
    assert!(
        steps.contains(&"confirmed") && steps.contains(&"duplicate"),
        "{detail}"
    );
    // Published (its time came back with the confirm), then confirmed.
    let position = |step: &str| steps.iter().position(|s| *s == step);
    assert!(
        position("published").is_some() && position("published") < position("confirmed"),
        "{detail}"
    );
    let published_at = detail["published_at"].as_str().expect("published_at");
    let confirmed_at = detail["confirmed_at"]
        .as_str()
        .expect("confirmed_at")
        .to_owned();
    assert!(published_at <= confirmed_at.as_str(), "{detail}");
    let at = timeline(&detail, "at");
    assert!(
        at.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {detail}"
    );
    assert_eq!(detail["event_id"], message.as_str());
    assert_no_personal_data(&detail.to_string());
    let dead_detail: Value = admin_get(&app, &format!("/admin/events/{dead}"))
        .await
        .json()
        .await
        .unwrap();
    let reason = dead_detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "dead")
        .unwrap_or_else(|| panic!("no dead step: {dead_detail}"));
    assert!(
        reason["detail"].as_str().unwrap().contains("312"),
        "{dead_detail}"
    );
    // Returned by the broker (no route), then dead-lettered: both steps, in that order.
    let dead_steps = timeline(&dead_detail, "step");
    assert_eq!(
        dead_steps[dead_steps.len() - 2..],
        ["returned", "dead"],
        "{dead_detail}"
    );

    // The body as relayed (redacted), on request only.
    let body = admin_get(&app, &format!("/admin/events/{message}/body")).await;
    assert_eq!(body.status(), 200);
    assert!(body.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(body.bytes().await.unwrap(), delivered.delivery.data);

    // Replay this one event: the same message_id on the queue, and in its timeline.
    let replay = app
        .http
        .post(admin_url(&app, &format!("/admin/events/{message}/replay")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.json::<Value>().await.unwrap()["replayed"], 1);
    let again = app.take(&app.queue(Kind::Message)).await;
    assert_eq!(message_id(&again), message);
    // Both confirms: the first one's time unchanged, then the replay, its copy published and
    // confirmed again.
    let replayed = eventually(&app, &format!("/admin/events/{message}"), |d| {
        d["state"] == "confirmed"
            && d["timeline"].as_array().is_some_and(|t| {
                t.iter().any(|s| s["step"] == "replayed")
                    && t.iter().filter(|s| s["step"] == "confirmed").count() == 2
                    && t.iter()
                        .any(|s| s["step"] == "published" && s["detail"] == "copy 1")
            })
    })
    .await;
    assert_no_personal_data(&replayed.to_string());
    assert_eq!(
        replayed["confirmed_at"],
        confirmed_at.as_str(),
        "{replayed}"
    );
    assert_eq!(replayed["published_at"], published_at, "{replayed}");
    let timeline: Vec<(&str, &str, Option<&str>)> = replayed["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap(),
                s["at"].as_str().unwrap(),
                s["detail"].as_str(),
            )
        })
        .collect();
    let confirms: Vec<_> = timeline.iter().filter(|s| s.0 == "confirmed").collect();
    assert_eq!(
        (confirms[0].1, confirms[0].2),
        (confirmed_at.as_str(), None),
        "the first confirm, unchanged: {replayed}"
    );
    assert_eq!(confirms[1].2, Some("copy 1"), "{replayed}");
    let replay = timeline
        .iter()
        .position(|s| s.0 == "replayed")
        .expect("the replay");
    assert!(
        timeline[replay].1 >= confirmed_at.as_str()
            && timeline[replay + 1..]
                .iter()
                .any(|s| s.0 == "published" && s.2 == Some("copy 1")),
        "{replayed}"
    );

    // Unknown, malformed, unauthenticated.
    let unknown = admin_get(&app, &format!("/admin/events/{}", "0".repeat(32))).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        admin_get(&app, "/admin/events/not-an-id").await.status(),
        400
    );
    assert_eq!(
        admin_get(&app, "/admin/events?state=lost").await.status(),
        400
    );
    assert_eq!(
        admin_get(&app, "/admin/events?limit=501").await.status(),
        400
    );
    assert_eq!(
        admin_get(&app, "/admin/events?since=yesterday-ish")
            .await
            .status(),
        400
    );
    let anonymous = app
        .http
        .get(admin_url(&app, "/admin/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // The command line through the running relay's admin API, then offline on its data dir.
    let config = config_file(&app);
    app.rebind(Kind::Other).await;
    cli_finds(config.clone(), &message, &status, &dead).await;
    let (settings, _data_dir) = app.stop().await;
    cli_finds(config, &message, &status, &dead).await;
    remove_topology(&settings);
}
