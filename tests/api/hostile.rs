//! Hostile input the ingest tests do not cover: raw-socket lies, huge headers, bad credentials of
//! every kind, and slow clients that must neither pin connections nor starve others.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

fn assert_nothing_stored(app: &TestApp) {
    let stats = app.store.stats();
    assert_eq!(
        (stats.outbox, stats.dedup_keys),
        (0, 0),
        "a refused request stored something"
    );
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the server answers or closes; returns the status line's code (0 = closed, no answer).
async fn read_status(stream: &mut TcpStream, within: Duration) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server neither answered nor closed within {within:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn head(content_length: usize) -> String {
    format!(
        "POST /hooks/{CONNECTION}/{TOKEN} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

#[tokio::test]
async fn malformed_bodies_are_400_and_store_nothing() {
    let app = spawn_app().await;
    let url = app.hook_url(CONNECTION, TOKEN);
    let cases: [&[u8]; 7] = [
        b"{\"acao\":\"start\",\"x\":\"\xff\xfe\"}",
        b"{\"acao\":\"start\"",
        b"{\"acao\":}",
        b"null",
        b"{\"a\":1}{\"b\":2}",
        b"\xef\xbb\xbf{\"acao\":\"start\"}",
        b"{\"a\":\"\\ud800\"}",
    ];
    for body in cases {
        let response = app
            .http
            .post(&url)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"], "bad_request");
    }
    let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let response = app.http.post(&url).body(deep_object).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_nothing_stored(&app);
}

#[tokio::test]
async fn lying_content_length_is_refused_or_timed_out() {
    let mut options = Options::new();
    options.settings.server.client_timeout = Duration::from_secs(1);
    let app = spawn_app_with(options).await;
    let limit = app.settings.server.max_body_bytes;

    // Declares more than the limit: refused before a byte of body is read.
    let mut stream = connect(&app).await;
    stream.write_all(head(limit + 1).as_bytes()).await.unwrap();
    assert_eq!(read_status(&mut stream, Duration::from_secs(5)).await, 413);

    // Declares 400 bytes, sends 20 and stalls: answered 408 after the client time-out.
    let mut stream = connect(&app).await;
    stream.write_all(head(400).as_bytes()).await.unwrap();
    stream.write_all(br#"{"acao":"start","x":"#).await.unwrap();
    let started = Instant::now();
    assert_eq!(read_status(&mut stream, Duration::from_secs(5)).await, 408);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "timed out before client_timeout"
    );

    // Declares 10 bytes and sends a whole event: only the declared bytes are the body.
    let body = fixture("message-start.json");
    let mut stream = connect(&app).await;
    stream.write_all(head(10).as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    assert_eq!(read_status(&mut stream, Duration::from_secs(5)).await, 400);
    assert_nothing_stored(&app);
}

#[tokio::test]
async fn absurd_headers_are_refused() {
    let app = spawn_app().await;
    let url = app.hook_url(CONNECTION, TOKEN);
    let huge = "a".repeat(256 * 1024);
    let response = app
        .http
        .post(&url)
        .header("x-junk", huge)
        .body(fixture("message-start.json"))
        .send()
        .await;
    match response {
        Ok(r) => assert!(r.status() == 431 || r.status() == 400, "got {}", r.status()),
        // The server may also just drop the connection: refused either way.
        Err(e) => assert!(e.is_request() || e.is_connect(), "{e}"),
    }
    let mut stream = connect(&app).await;
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("POST /hooks/{CONNECTION}/{TOKEN} HTTP/1.1\r\nHost: relay\r\n{many}Content-Length: 2\r\n\r\n{{}}");
    stream.write_all(request.as_bytes()).await.unwrap();
    let status = read_status(&mut stream, Duration::from_secs(5)).await;
    assert!(
        status == 431 || status == 400 || status == 0,
        "500 headers answered {status}"
    );
    assert_nothing_stored(&app);
}

#[tokio::test]
async fn every_bad_credential_is_401() {
    let app = spawn_app().await;
    let body = fixture("status-open.json");
    let url = format!("{}/hooks/{CONNECTION}", app.address);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let wrong_key = whaticket_relay::http::verify::sign_body(b"not-the-secret", &body);
    let future = whaticket_relay::http::verify::sign_standard(
        HMAC_SECRET.as_bytes(),
        "m1",
        now + 3600,
        &body,
    );
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![("authorization", "Bearer wrong".into())],
        vec![("authorization", format!("Basic {TOKEN}"))],
        vec![("authorization", format!("Bearer {TOKEN}x"))],
        vec![("x-signature-256", wrong_key)],
        vec![("x-signature-256", "sha256=zz".into())],
        vec![("x-signature-256", "md5=00".into())],
        vec![
            ("webhook-id", "m1".into()),
            ("webhook-timestamp", (now + 3600).to_string()),
            ("webhook-signature", future),
        ],
        vec![
            ("webhook-id", "m1".into()),
            ("webhook-timestamp", "not-a-number".into()),
            ("webhook-signature", "v1,AAAA".into()),
        ],
    ];
    for headers in cases {
        let mut request = app.http.post(&url).body(body.clone());
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    // A token for one connection does not open another one's URL, nor does an empty one.
    for url in [
        app.hook_url("other", TOKEN),
        format!("{}/hooks/{CONNECTION}/%20", app.address),
    ] {
        let response = app.http.post(&url).body(body.clone()).send().await.unwrap();
        assert!(
            matches!(response.status().as_u16(), 401 | 404),
            "{url}: {}",
            response.status()
        );
    }
    assert_nothing_stored(&app);
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_cannot_starve_others() {
    let mut options = Options::new();
    options.settings.server.client_timeout = Duration::from_secs(1);
    options.settings.server.max_connections = 4;
    let app = spawn_app_with(options).await;
    app.wait_ready().await;

    // Twice the cap of clients that send half a request head and then nothing.
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut stream = connect(&app).await;
        stream
            .write_all(b"POST /hooks/x/y HTTP/1.1\r\nHost: relay\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    // A well-behaved client still gets through, within a few client time-outs.
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = http
        .post(app.hook_url(CONNECTION, TOKEN))
        .body(fixture("message-start.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "starved for {:?}",
        started.elapsed()
    );
    // And every slow one was answered 408 or dropped, not held open.
    for stream in &mut slow {
        let status = read_status(stream, Duration::from_secs(5)).await;
        assert!(
            status == 408 || status == 0,
            "slow client answered {status}"
        );
    }
}
