//! What an outsider without a credential gets: a 401 before any body byte is read, the same
//! answers whether a connection exists or not, bounded memory for bodies it makes the relay read,
//! nothing internal on the public listener, throttled guesses of the admin token, private files
//! and a log it cannot flood.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::load::ChildConfig;

/// Writes `request` on a new connection and reads the whole answer until the relay closes or
/// `within` passes: (status, the answer's text, whether the relay closed the connection).
async fn exchange(address: &str, request: &[u8], within: Duration) -> (u16, String, bool) {
    let (status, text, closed, _) = exchange_timed(address, request, within).await;
    (status, text, closed)
}

/// As [`exchange`], with the time the answer's first byte took.
async fn exchange_timed(
    address: &str,
    request: &[u8],
    within: Duration,
) -> (u16, String, bool, Option<Duration>) {
    let mut stream = TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .expect("connect");
    let started = Instant::now();
    stream.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut first = None;
    let closed = loop {
        match tokio::time::timeout(within, stream.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => {
                first.get_or_insert_with(|| started.elapsed());
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    };
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text, closed, first)
}

fn post_head(path: &str, headers: &str, content_length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: relay\r\n{headers}Content-Length: {content_length}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_wrong_token_is_refused_before_any_body_byte_is_read() {
    let app = spawn_app().await;
    for path in [
        format!("/hooks/{CONNECTION}/not-the-token"),
        "/hooks/no-such-connection/not-the-token".to_owned(),
        format!("/hooks/{CONNECTION}"),
    ] {
        // A megabyte announced, not a byte of it sent.
        let head = post_head(&path, "Content-Type: application/json\r\n", 1_000_000);
        let (status, text, closed, answered) =
            exchange_timed(&app.address, head.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status, 401, "{path}: {text}");
        assert!(closed, "{path}: the connection stayed open after the 401");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
        let answered = answered.expect("an answer");
        assert!(
            answered < Duration::from_secs(1),
            "{path}: answered after {answered:?}: it waited for the body"
        );
    }
    // The right token: the body is awaited (here until the client time-out), not refused.
    let head = post_head(
        &format!("/hooks/{CONNECTION}/{TOKEN}"),
        "Content-Type: application/json\r\n",
        100,
    );
    let (status, _, _) = exchange(&app.address, head.as_bytes(), Duration::from_millis(500)).await;
    assert_eq!(status, 0, "answered before its body came");
}

#[tokio::test]
async fn known_and_unknown_connections_get_the_same_answers() {
    let app = spawn_app().await;
    let body = br#"{"acao":"start","mensagem":"oi"}"#;
    let sig = format!("X-Signature-256: sha256={}\r\n", "0".repeat(64));
    // (what is tried, headers, declared length, path suffix after the connection)
    let cases: Vec<(&str, String, usize, &str)> = vec![
        (
            "wrong token",
            "Content-Type: application/json\r\n".into(),
            body.len(),
            "/wrong-token-123",
        ),
        (
            "no credential",
            "Content-Type: application/json\r\n".into(),
            body.len(),
            "",
        ),
        (
            "wrong bearer",
            "Authorization: Bearer nope-nope-nope\r\n".into(),
            body.len(),
            "",
        ),
        (
            "wrong content type",
            "Content-Type: text/plain\r\n".into(),
            body.len(),
            "/wrong-token-123",
        ),
        (
            "too long",
            "Content-Type: application/json\r\n".into(),
            2_000_000,
            "/wrong-token-123",
        ),
        (
            "wrong signature",
            format!("Content-Type: application/json\r\n{sig}"),
            body.len(),
            "",
        ),
    ];
    for (what, headers, length, suffix) in cases {
        let mut answers = Vec::new();
        for connection in [CONNECTION, "nao-existe"] {
            let mut request =
                post_head(&format!("/hooks/{connection}{suffix}"), &headers, length).into_bytes();
            if length == body.len() {
                request.extend_from_slice(body);
            }
            let (status, text, _) = exchange(&app.address, &request, Duration::from_secs(3)).await;
            // The date differs by the second it was sent; nothing else may.
            let text: Vec<&str> = text
                .lines()
                .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
                .collect();
            answers.push((status, text.join("\n")));
        }
        assert_ne!(answers[0].0, 0, "{what}: no answer");
        assert_eq!(
            answers[0], answers[1],
            "{what}: a known connection answers differently"
        );
        println!("{what}: both {}", answers[0].0);
    }
}

#[tokio::test]
async fn nothing_internal_is_served_on_the_public_listener() {
    let app = spawn_app().await;
    app.wait_ready().await;
    assert_eq!(app.get("/metrics").await.status(), 404);
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("relay_outbox_events"), "{metrics}");
    for path in ["/readyz", "/readyz?scope=ingest", "/healthz"] {
        let text = app.get(path).await.text().await.unwrap();
        for internal in ["5672", "127.0.0.1", CONNECTION, "broker\""] {
            assert!(
                !text.contains(internal),
                "{path} tells {internal:?}: {text}"
            );
        }
    }
}

/// `GET /admin/stats` on `base` with `token` as the bearer.
async fn admin_stats(http: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    http.get(format!("{base}/admin/stats"))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin request")
}

#[tokio::test]
async fn admin_token_guesses_are_throttled_and_the_right_token_keeps_working() {
    let admin_token = "admin-token-for-the-throttle-test";
    let mut options = Options::new();
    options.settings.admin.bind = ([127, 0, 0, 1], 0).into();
    options.settings.admin.token = Some(whaticket_relay::config::Secret::new(admin_token));
    let app = spawn_app_with(options).await;
    let base = format!(
        "http://127.0.0.1:{}",
        app.admin_port.expect("admin listener")
    );

    // 200 wrong guesses at once, as a guesser would send them.
    let guesses = (0..200).map(|i| {
        let http = app.http.clone();
        let url = format!("{base}/admin/stats");
        async move {
            http.get(url)
                .bearer_auth(format!("guess-{i:04}-xxxxxxxxxxxx"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    println!("200 wrong admin tokens: {checked} checked (401), {throttled} throttled (429)");
    assert_eq!(checked + throttled, 200, "{statuses:?}");
    // A burst of 10, then 5 a second: far fewer than 200 in the time this took.
    assert!(checked <= 20, "{checked} guesses were checked");

    // The right token from another address works at once; from the guesser's, once it paused.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    assert_eq!(
        admin_stats(&elsewhere, &base, admin_token).await.status(),
        200
    );
    let guessed_again = admin_stats(&app.http, &base, "one-more-guess-xxxxxxxxxx").await;
    assert_eq!(guessed_again.status(), 429);
    assert_eq!(guessed_again.headers()["retry-after"], "1");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        admin_stats(&app.http, &base, admin_token).await.status(),
        200
    );

    // The status page's login draws from the same bucket.
    for _ in 0..30 {
        admin_stats(&app.http, &base, "again-a-guess-xxxxxxxxxx").await;
    }
    let login = app
        .http
        .post(format!("{base}/status/login"))
        .header("origin", &base)
        .form(&[("token", "login-guess-xxxxxxxxxxxx")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 429);
    assert!(login
        .text()
        .await
        .unwrap()
        .contains("Too many wrong tokens"));
    assert!(
        app.counter_with("relay_admin_auth_failures_total", "throttled")
            .await
            >= 1
    );
    assert!(
        app.counter_with("relay_admin_auth_failures_total", "refused")
            .await
            >= 10
    );
}

fn modes(path: &Path, out: &mut Vec<(String, u32, bool)>) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    out.push((
        path.display().to_string(),
        meta.permissions().mode() & 0o777,
        meta.is_dir(),
    ));
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            modes(&entry.unwrap().path(), out);
        }
    }
}

#[tokio::test]
async fn the_data_directory_is_private_whatever_the_umask() {
    let mut config = ChildConfig::new();
    config.umask = Some(0o022);
    let mut relay = config.spawn().await;
    let response = reqwest::Client::new()
        .post(relay.hook_url())
        .body(fixture("message-start.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    // sled writes its files at its next flush (a second at most) and at the stop.
    relay.signal("TERM");
    assert!(relay.wait_exit(Duration::from_secs(20)).await.success());
    let mut found = Vec::new();
    modes(&config.dir.path().join("data"), &mut found);
    assert!(found.len() >= 4, "{found:?}");
    assert!(found
        .iter()
        .any(|(p, _, _)| p.ends_with(".seg") || p.contains("segments/")));
    for (path, mode, dir) in &found {
        let wanted = if *dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, wanted, "{path} is {mode:o} under umask 022");
    }
}

#[tokio::test]
async fn a_flood_of_refusals_logs_a_line_per_reason_not_per_request() {
    let config = ChildConfig::new();
    let mut relay = config.spawn().await;
    let http = reqwest::Client::new();
    let wrong = relay.url(&format!("/hooks/{CONNECTION}/not-the-token"));
    for _ in 0..1000 {
        assert_eq!(post_status(&wrong, "{}").await, 401);
        let status = http
            .post(relay.hook_url())
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 415);
    }
    relay.signal("TERM");
    assert!(relay.wait_exit(Duration::from_secs(20)).await.success());
    let log = relay.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("webhook refused"))
        .count();
    println!("2000 refusals of 2 reasons: {lines} log lines");
    assert_eq!(lines, 2, "{log}");
}

/// Peak resident memory of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[tokio::test]
async fn signed_garbage_cannot_make_the_relay_buffer_more_than_its_budget() {
    const BUDGET: u64 = 8 * 1024 * 1024;
    const CLIENTS: usize = 200;
    const BODY: usize = 1_000_000;
    let mut config = ChildConfig::new();
    config.env = vec![
        (
            "RELAY__SERVER__UNAUTHENTICATED_BODY_BYTES",
            BUDGET.to_string(),
        ),
        ("RELAY__SERVER__CLIENT_TIMEOUT", "3s".to_owned()),
    ];
    let relay = config.spawn().await;
    // Warm: a few real events, so the store and the publisher have their buffers.
    for i in 0..20 {
        let body = format!(r#"{{"acao":"start","ticketId":{i},"mensagem":"warm"}}"#);
        assert_eq!(post_status(&relay.hook_url(), body).await, 202);
    }
    let before = peak_rss(relay.pid());

    // Each client announces a megabyte signed with a wrong key, sends all of it but the last
    // byte, and stalls: the relay cannot verify it until it has all of it.
    let address = relay.url("");
    let clients = (0..CLIENTS).map(|_| {
        let address = address.clone();
        async move {
            let sig = format!("X-Signature-256: sha256={}\r\n", "0".repeat(64));
            let head = post_head(
                &format!("/hooks/{CONNECTION}"),
                &format!("Content-Type: application/json\r\n{sig}"),
                BODY,
            );
            let Ok(mut stream) = TcpStream::connect(address.trim_start_matches("http://")).await
            else {
                return 0;
            };
            let mut request = head.into_bytes();
            request.extend(std::iter::repeat_n(b' ', BODY - 1));
            // A refused client's write fails once the relay closed: expected.
            let _ = stream.write_all(&request).await;
            let mut buf = vec![0u8; 1024];
            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&buf[..n])
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or(0),
                _ => 0,
            }
        }
    });
    let statuses = futures_util::future::join_all(clients).await;
    let after = peak_rss(relay.pid());
    let busy = statuses.iter().filter(|s| **s == 503).count();
    let timed_out = statuses.iter().filter(|s| **s == 408).count();
    let growth = after.saturating_sub(before);
    println!(
        "{CLIENTS} clients x 1 MB signed garbage, budget {} MiB: {busy} answered 503, {timed_out} \
         read and timed out (408), others {}; peak RSS {:.1} -> {:.1} MiB (+{:.1} MiB)",
        BUDGET >> 20,
        CLIENTS - busy - timed_out,
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        growth as f64 / 1048576.0
    );
    assert!(
        busy >= CLIENTS / 2,
        "only {busy} of {CLIENTS} were turned away: {statuses:?}"
    );
    // The budget, plus what each connection's socket buffering costs actix: not 200 MB.
    assert!(
        growth < BUDGET + 40 * 1024 * 1024,
        "peak RSS grew {growth} bytes for a budget of {BUDGET}"
    );
    // Real webhooks still go through.
    let body = r#"{"acao":"start","ticketId":999,"mensagem":"after"}"#.to_owned();
    assert_eq!(post_status(&relay.hook_url(), body).await, 202);
}
