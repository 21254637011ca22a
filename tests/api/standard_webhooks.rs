//! Standard Webhooks as its reference library reads it: the library's vectors replayed at their
//! own time (the clock injected into the verifier), and through the endpoint the signed
//! `webhook-id` as the event's identity, the tolerance to the fraction of a second, and unpadded
//! `whsec_` secrets. The vectors (tests/fixtures/standard-webhooks/) were made by the PyPI
//! `standardwebhooks` library for the cases of the official repository's libraries/*/tests.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use whaticket_relay::config::{decode_secret, ConnectionSettings, Secret};
use whaticket_relay::event::Kind;
use whaticket_relay::http::verify::{sign_standard, Presented, Verified, Verifier};

use crate::helpers::*;

#[derive(Deserialize)]
struct Vectors {
    sign: Vec<SignVector>,
    verify: Vec<VerifyVector>,
}

/// `Webhook(secret).sign(id, timestamp, payload)` and the key the library decoded from `secret`.
#[derive(Deserialize)]
struct SignVector {
    name: String,
    secret: String,
    key_hex: String,
    id: String,
    timestamp: i64,
    payload: String,
    signature: String,
}

/// The library's verdict on these headers (a missing one is `None`) with its clock at
/// `now_secs + now_micros`.
#[derive(Deserialize)]
struct VerifyVector {
    name: String,
    secret: String,
    payload: String,
    webhook_id: Option<String>,
    webhook_timestamp: Option<String>,
    webhook_signature: Option<String>,
    now_secs: u64,
    now_micros: u64,
    valid: bool,
}

fn vectors() -> Vectors {
    serde_json::from_slice(&fixture("standard-webhooks/vectors.json")).expect("vectors parse")
}

/// The reference library's signing, written out here apart from the relay's `sign_standard`:
/// `v1,` + base64 of HMAC-SHA256 under the decoded key over `{id}.{timestamp}.{payload}`.
fn library_sign(key: &[u8], id: &str, timestamp: i64, payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(payload);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

fn key_of(vector: &SignVector) -> Vec<u8> {
    hex::decode(&vector.key_hex).expect("hex key")
}

fn verifier(secret: &str) -> Verifier {
    Verifier::new(&ConnectionSettings {
        name: "vectors".to_owned(),
        tokens: Vec::new(),
        hmac_secrets: vec![Secret::new(secret)],
        company_id: None,
        rules: Vec::new(),
        body: None,
    })
    .unwrap_or_else(|e| panic!("{secret}: {e}"))
}

#[test]
fn the_library_signatures_are_reproduced_and_its_secrets_decoded_alike() {
    let vectors = vectors();
    assert_eq!(vectors.sign.len(), 8);
    for v in &vectors.sign {
        let key = key_of(v);
        assert_eq!(
            decode_secret(&v.secret).as_deref(),
            Ok(key.as_slice()),
            "{}: the relay decodes the secret to the library's key",
            v.name
        );
        let payload = v.payload.as_bytes();
        assert_eq!(
            library_sign(&key, &v.id, v.timestamp, payload),
            v.signature,
            "{}: this test's signer",
            v.name
        );
        assert_eq!(
            sign_standard(&key, &v.id, v.timestamp, payload),
            v.signature,
            "{}: the relay's signer",
            v.name
        );
    }
    // The published vector every library's sign test checks.
    let spec = &vectors.sign[0];
    assert_eq!(
        (spec.id.as_str(), spec.timestamp, spec.signature.as_str()),
        (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        )
    );
}

#[test]
fn the_library_verdicts_are_the_relays_at_the_same_instant() {
    let vectors = vectors();
    assert_eq!(vectors.verify.len(), 29);
    let (mut valid, mut invalid) = (0, 0);
    for v in &vectors.verify {
        let presented = Presented {
            webhook_id: v.webhook_id.as_deref().map(str::as_bytes),
            webhook_timestamp: v.webhook_timestamp.as_deref().map(str::as_bytes),
            webhook_signature: v.webhook_signature.as_deref().map(str::as_bytes),
            ..Default::default()
        };
        let now =
            UNIX_EPOCH + Duration::from_secs(v.now_secs) + Duration::from_micros(v.now_micros);
        let got = verifier(&v.secret).verify(&presented, v.payload.as_bytes(), now);
        if v.valid {
            valid += 1;
            let id = v.webhook_id.as_deref().expect("a valid case has an id");
            assert_eq!(
                got,
                Ok(Verified::StandardWebhooks { id: id.as_bytes() }),
                "{}",
                v.name
            );
        } else {
            invalid += 1;
            assert!(got.is_err(), "{}: accepted", v.name);
        }
    }
    // Both verdicts are exercised, the tolerance's edges on both sides.
    assert_eq!((valid, invalid), (12, 17));
}

fn unix_now() -> (i64, Duration) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    (
        i64::try_from(since.as_secs()).expect("fits"),
        Duration::from_nanos(u64::from(since.subsec_nanos())),
    )
}

/// POSTs `body` to `/hooks/{CONNECTION}` signed as the library signs, under `key`.
async fn post_signed(
    app: &TestApp,
    key: &[u8],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> reqwest::Response {
    app.http
        .post(format!("{}/hooks/{CONNECTION}", app.address))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", library_sign(key, id, timestamp, body))
        .body(body.to_vec())
        .send()
        .await
        .expect("request failed")
}

async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.expect("JSON answer"))
}

/// A relay connected to the broker, and the unix second it was ready at.
async fn ready_app() -> (TestApp, i64) {
    let app = spawn_app().await;
    app.wait_ready().await;
    (app, unix_now().0)
}

fn message_id(message: &lapin::message::BasicGetMessage) -> Option<&str> {
    let id = message.delivery.properties.message_id().as_ref();
    id.map(|id| id.as_str())
}

/// A Standard Webhooks event: no Whaticket shape, so unsigned it would be keyed by its bytes.
const EVENT: &[u8] =
    br#"{"type":"invoice.paid","timestamp":"2024-05-01T12:00:00Z","data":{"id":"inv_42","amount":1990}}"#;

#[tokio::test]
async fn a_new_webhook_id_with_a_body_seen_before_is_a_new_event() {
    let (app, now) = ready_app().await;
    let key = HMAC_SECRET.as_bytes();

    let (status, first) = answer(post_signed(&app, key, "msg_first", now, EVENT).await).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, second) = answer(post_signed(&app, key, "msg_second", now, EVENT).await).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_eq!(second["status"], "accepted");
    assert_ne!(second["id"], first["id"], "a new id");

    // Both are relayed, each under its own id.
    let queue = app.queue(Kind::Other);
    let mut relayed: Vec<String> = app
        .take_n(&queue, 2)
        .await
        .iter()
        .map(|m| {
            assert_eq!(m.delivery.data, EVENT);
            message_id(m).expect("message_id").to_owned()
        })
        .collect();
    relayed.sort();
    let mut answered = [&first["id"], &second["id"]].map(|id| id.as_str().unwrap());
    answered.sort();
    assert_eq!(relayed, answered);

    // The same bytes sent unsigned (by token) are still keyed by their bytes: one event.
    let (status, by_token) = answer(app.post_hook(EVENT).await).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{by_token}");
    let (status, again) = answer(app.post_hook(EVENT).await).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &by_token["id"]));
}

#[tokio::test]
async fn a_retry_with_the_same_webhook_id_and_a_reserialised_body_is_a_duplicate() {
    let (app, now) = ready_app().await;
    let key = HMAC_SECRET.as_bytes();
    let reserialised =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(EVENT).expect("EVENT is JSON"))
            .expect("serialises");
    assert_ne!(reserialised, EVENT);

    let (status, first) = answer(post_signed(&app, key, "msg_retried", now, EVENT).await).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    // The sender's retry: same id, a later timestamp, the body serialised anew.
    let (status, retry) =
        answer(post_signed(&app, key, "msg_retried", now + 5, &reserialised).await).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry["status"], "duplicate");
    assert_eq!(retry["id"], first["id"]);

    // Relayed once: the first body, under the first id.
    app.wait_outbox_empty().await;
    let queue = app.queue(Kind::Other);
    assert_eq!(app.queue_len(&queue).await, 1);
    let message = app.take(&queue).await;
    assert_eq!(message.delivery.data, EVENT);
    assert_eq!(message_id(&message), first["id"].as_str());
}

#[tokio::test]
async fn a_timestamp_of_floor_now_minus_300_is_refused() {
    let app = spawn_app().await;
    let key = HMAC_SECRET.as_bytes();
    // At a whole second the library takes floor(now) - 300; the relay reads its clock after
    // this one, so past a whole second here it is past one there too.
    let now = loop {
        match unix_now() {
            (_, Duration::ZERO) => std::thread::sleep(Duration::from_micros(1)),
            (now, _) => break now,
        }
    };

    let (status, refused) = answer(post_signed(&app, key, "msg_old", now - 300, EVENT).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    // Five seconds inside the tolerance it is taken (a request takes milliseconds).
    let (status, taken) = answer(post_signed(&app, key, "msg_old", now - 295, EVENT).await).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{taken}");
    // The refused one stored nothing: the accepted one is the first with its id.
    assert_eq!(taken["status"], "accepted");
}

#[tokio::test]
async fn an_unpadded_whsec_secret_verifies_through_the_endpoint() {
    let vectors = vectors();
    let unpadded: Vec<&SignVector> = vectors
        .sign
        .iter()
        .filter(|v| v.name.starts_with("unpadded secret"))
        .collect();
    assert_eq!(unpadded.len(), 3);
    let mut options = Options::new();
    options.settings.connections[0].hmac_secrets = unpadded
        .iter()
        .map(|v| Secret::new(v.secret.as_str()))
        .collect();
    let app = spawn_app_with(options).await;
    let (now, _) = unix_now();
    for (i, v) in unpadded.iter().enumerate() {
        // Bodies apart too, so that only the signature is on trial here.
        let event = format!(r#"{{"type":"key.tested","data":{{"n":{i}}}}}"#);
        let id = format!("msg_key_{i}");
        let response = post_signed(&app, &key_of(v), &id, now, event.as_bytes()).await;
        let (status, body) = answer(response).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}: {body}", v.name);
    }
    let (status, _) = answer(post_signed(&app, b"another key", "msg_x", now, EVENT).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn check_config_takes_an_unpadded_whsec_secret_and_refuses_a_bad_one() {
    let check = |secret: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            format!("[[connections]]\nname = \"loja\"\nhmac_secrets = [\"{secret}\"]\n"),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_whaticket-relay"))
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    for secret in [
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
    ] {
        let out = check(secret);
        assert!(
            out.status.success(),
            "{secret}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = check("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwB");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connections[0].hmac_secrets[0]") && stderr.contains("base64"),
        "{stderr}"
    );
}
