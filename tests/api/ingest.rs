//! The HTTP contract: statuses, JSON answers, authentication, and that refused requests store nothing.

use reqwest::StatusCode;
use serde_json::Value;
use whaticket_relay::http::verify::{sign_body, sign_standard};

use crate::helpers::*;

async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("answer is JSON")
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["status"], "ok");
}

#[tokio::test]
async fn readyz_reports_ready_once_connected() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["status"], "ready");
}

#[tokio::test]
async fn accepted_event_answers_202_with_id_and_kind() {
    let app = spawn_app().await;
    let response = app.post_hook(fixture("message-start.json")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body = json(response).await;
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["kind"], "message");
    assert_eq!(body["id"].as_str().expect("id").len(), 32);
}

#[tokio::test]
async fn duplicate_answers_200_with_the_same_id() {
    let app = spawn_app().await;
    let first = json(app.post_hook(fixture("status-open.json")).await).await;
    let response = app.post_hook(fixture("status-open.json")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let second = json(response).await;
    assert_eq!(second["status"], "duplicate");
    assert_eq!(second["id"], first["id"]);
}

#[tokio::test]
async fn bearer_token_and_rotated_token_are_accepted() {
    let app = spawn_app().await;
    for (i, token) in [TOKEN, OLD_TOKEN].into_iter().enumerate() {
        let body = format!(r#"{{"acao":"brand-new","n":{i}}}"#);
        let response = app
            .http
            .post(format!("{}/hooks/{CONNECTION}", app.address))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "token #{i}");
    }
}

#[tokio::test]
async fn signed_bodies_are_accepted_and_tampered_ones_refused() {
    let app = spawn_app().await;
    let url = format!("{}/hooks/{CONNECTION}", app.address);
    let body = fixture("tag-sync.json");

    let good = sign_body(HMAC_SECRET.as_bytes(), &body);
    let response = app
        .http
        .post(&url)
        .header("x-signature-256", &good)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let mut tampered = body.clone();
    let last = tampered.len() - 3;
    tampered[last] ^= 1;
    let response = app
        .http
        .post(&url)
        .header("x-signature-256", &good)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let other = fixture("status-closed.json");
    let sig = sign_standard(HMAC_SECRET.as_bytes(), "msg_1", now, &other);
    let response = app
        .http
        .post(&url)
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", format!("v1,bm90LXRoZS1zaWc= {sig}"))
        .body(other.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let old = now - 600;
    let stale = sign_standard(HMAC_SECRET.as_bytes(), "msg_2", old, &other);
    let response = app
        .http
        .post(&url)
        .header("webhook-id", "msg_2")
        .header("webhook-timestamp", old.to_string())
        .header("webhook-signature", stale)
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_connection_and_bad_token_get_the_same_401() {
    let app = spawn_app().await;
    let body = fixture("message-start.json");
    let bad_token = app
        .http
        .post(app.hook_url(CONNECTION, "wrong-token-123"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let unknown = app
        .http
        .post(app.hook_url("nope", TOKEN))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let no_credentials = app
        .http
        .post(format!("{}/hooks/{CONNECTION}", app.address))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_token.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(no_credentials.status(), StatusCode::UNAUTHORIZED);
    let (a, b, c) = (
        json(bad_token).await,
        json(unknown).await,
        json(no_credentials).await,
    );
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a["error"], "unauthorized");
    assert_eq!(app.store.stats().outbox, 0);
}

#[tokio::test]
async fn bad_requests_get_their_status_and_store_nothing() {
    let app = spawn_app().await;
    let url = app.hook_url(CONNECTION, TOKEN);
    let limit = app.settings.server.max_body_bytes;

    let truncated = &fixture("message-start.json")[..200];
    let response = app
        .http
        .post(&url)
        .body(truncated.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json(response).await;
    assert_eq!(body["error"], "bad_request");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("line") && detail.contains("column"),
        "{detail}"
    );

    for not_object in [&b"[1,2]"[..], b"\"text\"", b"42", b"", b"\xff\xfe{}"] {
        let response = app
            .http
            .post(&url)
            .body(not_object.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{not_object:?}");
    }

    let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let response = app.http.post(&url).body(deep).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let big = format!("{{\"acao\":\"start\",\"pad\":\"{}\"}}", "x".repeat(limit));
    let response = app.http.post(&url).body(big).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(response).await["error"], "payload_too_large");

    // Chunked: no Content-Length to refuse early, so the limit applies while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..(limit / 65536 + 2))
        .map(|_| Ok(vec![b' '; 65536]))
        .collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = app.http.post(&url).body(stream).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin1",
    ] {
        let response = app
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(fixture("message-start.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
    }

    assert_eq!(
        app.store.stats().dedup_keys,
        0,
        "a refused request stored something"
    );
    assert_eq!(
        app.store.stats().outbox,
        0,
        "a refused request stored something"
    );

    // No content type at all is taken as JSON.
    let response = app
        .http
        .post(&url)
        .body(fixture("message-start.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    assert_eq!(app.store.stats().dedup_keys, 1);
}

#[tokio::test]
async fn company_mismatch_is_forbidden() {
    let mut options = Options::new();
    options.settings.connections[0].company_id = Some(2);
    let app = spawn_app_with(options).await;
    let response = app.post_hook(fixture("message-start.json")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(json(response).await["error"], "forbidden");
    let response = app.post_hook(r#"{"acao":"brand-new","companyId":2}"#).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn every_answer_is_json_even_404_and_405() {
    let app = spawn_app().await;
    let response = app.get("/nowhere").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(response).await["error"], "not_found");
    let response = app.get(&format!("/hooks/{CONNECTION}/{TOKEN}")).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json(response).await["error"], "method_not_allowed");
}
