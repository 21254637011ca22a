//! Other Whaticket-family senders, with the credentials where each puts them: every fork body in
//! `tests/fixtures/forks/` is taken through the real endpoint with its sender's headers
//! (`expected.json`), and the same request with a tampered credential or body is refused.

use reqwest::StatusCode;
use serde_json::Value;
use whaticket_relay::http::verify::sign_body;

use crate::helpers::*;

/// `expected.json`: per file, the headers its sender uses (`{token}`, `{hmac_hex}` placeholders).
fn expected() -> Vec<(String, Vec<(String, String)>)> {
    let index: Value =
        serde_json::from_slice(&fixture("forks/expected.json")).expect("expected.json is JSON");
    let files = index.as_object().expect("expected.json is an object");
    assert!(files.len() >= 13, "the fork fixtures are all listed");
    files
        .iter()
        .map(|(file, spec)| {
            let headers = spec["headers"]
                .as_object()
                .expect("headers object")
                .iter()
                .map(|(name, value)| {
                    let value = value.as_str().expect("header template is text");
                    (name.clone(), value.to_owned())
                })
                .collect();
            (file.clone(), headers)
        })
        .collect()
}

fn hmac_hex(body: &[u8]) -> String {
    sign_body(HMAC_SECRET.as_bytes(), body)["sha256=".len()..].to_owned()
}

/// Posts `body` as its sender does: with headers to `/hooks/{connection}`, without them to the
/// URL carrying the token (what a Whaticket user pastes).
async fn send(
    app: &TestApp,
    headers: &[(String, String)],
    token: &str,
    signed_body: &[u8],
    body: Vec<u8>,
) -> reqwest::Response {
    let url = if headers.is_empty() {
        app.hook_url(CONNECTION, token)
    } else {
        format!("{}/hooks/{CONNECTION}", app.address)
    };
    let mut request = app
        .http
        .post(url)
        .header("content-type", "application/json");
    for (name, template) in headers {
        let value = template
            .replace("{token}", token)
            .replace("{hmac_hex}", &hmac_hex(signed_body));
        request = request.header(name.as_str(), value);
    }
    request.body(body).send().await.expect("request failed")
}

#[tokio::test]
async fn each_fork_authenticates_the_way_its_sender_does() {
    let app = spawn_app().await;
    for (file, headers) in expected() {
        let body = fixture(&format!("forks/{file}"));
        let response = send(&app, &headers, TOKEN, &body, body.clone()).await;
        let status = response.status();
        // Two files are one event in two formats: the second may be a duplicate (200).
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::OK,
            "{file}: {status}"
        );
        let answer: Value = response.json().await.expect("JSON answer");
        assert_eq!(answer["id"].as_str().map(str::len), Some(32), "{file}");
    }
}

#[tokio::test]
async fn each_fork_with_a_tampered_credential_or_body_is_refused() {
    let app = spawn_app().await;
    let wrong_token = format!("{}x", &TOKEN[..TOKEN.len() - 1]);
    for (file, headers) in expected() {
        let body = fixture(&format!("forks/{file}"));
        let signed = headers.iter().any(|(_, v)| v.contains("{hmac_hex}"));
        if signed {
            // The signature is over the body, not the token: tamper with the body instead.
            let mut tampered = body.clone();
            let last = tampered.len() - 2;
            tampered[last] = b' ';
            let refused = send(&app, &headers, TOKEN, &body, tampered).await;
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{file}");
            let answer: Value = refused.json().await.expect("JSON answer");
            assert_eq!(answer["error"], "unauthorized", "{file}");
            // And a signature of other bytes.
            let mut other = body.clone();
            other.push(b' ');
            let refused = send(&app, &headers, TOKEN, &other, body.clone()).await;
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{file}");
        } else {
            let response = send(&app, &headers, &wrong_token, &body, body.clone()).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{file}");
            let answer: Value = response.json().await.expect("JSON answer");
            assert_eq!(answer["error"], "unauthorized", "{file}");
        }
    }
    // Nothing refused was stored.
    assert_eq!(app.store.stats().outbox, 0);
    assert_eq!(app.store.stats().dedup_keys, 0);
}
