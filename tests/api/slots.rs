//! Connection slots: no client holds one past its deadlines, whatever it sends between requests,
//! and a new client gets one at once when idle connections fill them.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// A connection that made one complete keep-alive request and read its answer: what a sender's
/// pooled connection looks like between webhooks.
async fn after_one_request(app: &TestApp) -> TcpStream {
    let mut stream = connect(app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") || !buf.ends_with(b"}") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("an answer to the first request")
            .unwrap();
        assert!(n > 0, "closed after the first request");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    stream
}

/// How long until the relay closes `stream` (reads nothing more), within `limit`; `None` if it
/// is still open then.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_later_request_head_has_the_same_deadline_as_the_first() {
    let mut options = Options::new();
    options.settings.server.client_timeout = Duration::from_secs(1);
    options.settings.server.keep_alive = Duration::from_secs(3);
    let app = spawn_app_with(options).await;

    // One byte of a next request after the first answer: before, held for good.
    let mut partial = after_one_request(&app).await;
    let mut idle = after_one_request(&app).await;
    partial.write_all(b"P").await.unwrap();
    let sent = Instant::now();
    let closed = closed_within(&mut partial, Duration::from_secs(5))
        .await
        .expect("a connection with a partial next request head was held open");
    let after_byte = sent.elapsed();
    println!("partial next head closed {after_byte:?} after its byte (client_timeout 1 s)");
    assert!(
        after_byte >= Duration::from_millis(900) && closed < Duration::from_millis(2500),
        "closed {after_byte:?} after its first byte; client_timeout is 1 s"
    );
    // An idle one is not cut by the head deadline, only by keep_alive (3 s after its answer).
    assert!(
        closed_within(&mut idle, Duration::from_millis(500))
            .await
            .is_none(),
        "an idle connection was closed by the head deadline"
    );
    let idle_closed = closed_within(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle connection outlived keep_alive");
    println!("idle connection closed {idle_closed:?} later (keep_alive 3 s)");
    assert!(
        app.counter_with("relay_connections_closed_total", "head_timeout")
            .await
            >= 1
    );
}

#[tokio::test]
async fn pinned_and_idle_connections_do_not_keep_a_new_client_out() {
    let mut options = Options::new();
    let client_timeout = Duration::from_secs(2);
    options.settings.server.client_timeout = client_timeout;
    // Long: without eviction, the idle ones would hold their slots for 60 s.
    options.settings.server.keep_alive = Duration::from_secs(60);
    // Two workers (test settings) of four slots each.
    options.settings.server.max_connections = 8;
    let app = spawn_app_with(options).await;
    app.wait_ready().await;

    // Every slot taken: four connections each holding one byte of a next request, four idle.
    let mut held = Vec::new();
    for i in 0..8 {
        let mut stream = after_one_request(&app).await;
        if i % 2 == 0 {
            stream.write_all(b"P").await.unwrap();
        }
        held.push(stream);
    }
    // New clients, each on a new connection, are answered well within client_timeout.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for i in 0..4 {
        let started = Instant::now();
        let response = http
            .post(app.hook_url(CONNECTION, TOKEN))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"acao":"start","ticketId":{i},"mensagem":"slot {i}"}}"#
            ))
            .send()
            .await
            .expect("the new client's webhook");
        let waited = started.elapsed();
        println!("new client {i}: {} after {waited:?}", response.status());
        assert_eq!(response.status(), 202);
        assert!(
            waited < client_timeout,
            "a new client waited {waited:?} for a slot (client_timeout {client_timeout:?})"
        );
    }
    // The ones holding a partial head were closed to make room or by their head deadline: none
    // is held past it.
    for (i, stream) in held.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0) {
        assert!(
            closed_within(stream, client_timeout + Duration::from_millis(1500))
                .await
                .is_some(),
            "connection {i}, holding a partial head, outlived client_timeout"
        );
    }
    let evicted = app
        .counter_with("relay_connections_closed_total", "evicted_idle")
        .await;
    println!("evicted: {evicted}");
    assert!(evicted >= 1, "no idle connection was evicted");
}
