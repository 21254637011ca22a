//! No credential leaves (#29): bodies carrying the credentials senders put in them (Izing's
//! `authToken`, Whazing's `apiConfig`, request headers copied as an object, as pairs and as a
//! flat list, OAuth and API secrets at depth, in every spelling) are posted through the endpoint
//! on the default configuration; neither the published bytes, nor a dead letter, nor a replay,
//! nor the data dir's files hold any of the values, and every other byte is relayed.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use whaticket_relay::event::Kind;
use whaticket_relay::store::ReplayFilter;

use crate::helpers::*;

/// One body and what must and must not leave with it.
struct Case {
    name: String,
    body: Vec<u8>,
    secrets: Vec<String>,
    kept: Vec<String>,
}

/// `tests/fixtures/credentials/`, as `secrets.json` describes each body.
fn fixtures() -> Vec<Case> {
    let index: Value = serde_json::from_slice(&fixture("credentials/secrets.json")).unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    index
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, spec)| Case {
            name: name.clone(),
            body: fixture(&format!("credentials/{name}")),
            secrets: strings(&spec["secret_values"]),
            kept: strings(&spec["kept_values"]),
        })
        .collect()
}

/// The fixtures' names respelled as other senders write them: Izing's `authToken` and the
/// copied n8n key in other cases and with `-`/`_`, each with a value of its own.
fn respelled() -> Vec<Case> {
    let izing =
        String::from_utf8(fixture("credentials/izing-message-with-authtoken.json")).unwrap();
    let pairs = String::from_utf8(fixture("credentials/headers-pairs.json")).unwrap();
    let mut cases = Vec::new();
    for (i, spelling) in ["AUTH_TOKEN", "auth-token", "Authtoken", "_authToken_"]
        .into_iter()
        .enumerate()
    {
        let secret = format!("izing-token-{i}-EXAMPLE-respelled");
        let body = izing
            .replace("\"authToken\"", &format!("\"{spelling}\""))
            .replace("izing-integration-token-EXAMPLE", &secret)
            .replace("3EB0C0DE000000000034", &format!("3EB0C0DE00000000004{i}"));
        cases.push(Case {
            name: format!("izing with {spelling}"),
            body: body.into_bytes(),
            secrets: vec![secret],
            kept: vec!["ok, obrigado".into()],
        });
    }
    for (i, spelling) in ["X_N8N_API_KEY", "X-N8N-Api-Key", "xN8nApiKey"]
        .into_iter()
        .enumerate()
    {
        let secret = format!("n8n-key-{i}-EXAMPLE-respelled");
        let body = pairs
            .replace("\"x-n8n-api-key\"", &format!("\"{spelling}\""))
            .replace("n8n-api-key-EXAMPLE-pairs", &secret)
            .replace("\"authorization\"", "\"AUTHORIZATION\"")
            .replace(
                "bearer-EXAMPLE-pairs",
                &format!("bearer-{i}-EXAMPLE-respelled"),
            )
            .replace("3EB0D00D0000CAFE0002", &format!("3EB0D00D0000CAFE001{i}"));
        cases.push(Case {
            name: format!("pairs with {spelling}"),
            body: body.into_bytes(),
            secrets: vec![secret, format!("Bearer bearer-{i}-EXAMPLE-respelled")],
            kept: vec!["crm.example".into(), "segunda via do boleto".into()],
        });
    }
    cases
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every message in every kind queue, by `message_id`, once the outbox is empty.
async fn drain(app: &TestApp) -> HashMap<String, Vec<u8>> {
    app.wait_outbox_empty().await;
    let mut kinds = Vec::new();
    for kind in Kind::ALL {
        let ready = app.queue_len(&app.queue(kind)).await as usize;
        kinds.extend(std::iter::repeat_n(kind, ready));
    }
    app.take_each(kinds)
        .await
        .into_iter()
        .map(|(_, id, message)| (id, message.delivery.data))
        .collect()
}

/// The bytes of every file under `dir`: segments, sled's files, token files.
fn files_under(dir: &Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
}

/// What left for one case holds none of its secrets and all of its kept values.
fn check(case: &Case, what: &str, bytes: &[u8]) {
    for secret in &case.secrets {
        assert!(
            !contains(bytes, secret),
            "{what} of {} carries {secret:?}: {}",
            case.name,
            String::from_utf8_lossy(bytes)
        );
    }
    for value in &case.kept {
        assert!(
            contains(bytes, value),
            "{what} of {} lost {value:?}: {}",
            case.name,
            String::from_utf8_lossy(bytes)
        );
    }
    assert!(contains(bytes, "\"[redacted]\""), "{what} of {}", case.name);
    serde_json::from_slice::<Value>(bytes)
        .unwrap_or_else(|e| panic!("{what} of {} is no JSON: {e}", case.name));
}

#[tokio::test]
async fn no_credential_is_published_dead_lettered_replayed_or_stored() {
    // The default configuration, but for the topology: declared by the test, so that an event
    // nothing routes goes to the dead store instead of a declared-again binding.
    let app = spawn_app_with(Options::new().topology_managed_elsewhere()).await;
    app.wait_ready().await;
    let cases: Vec<Case> = fixtures().into_iter().chain(respelled()).collect();
    assert_eq!(cases.len(), 14);
    // Tickets go to the dead store: nothing routes `status.#` until the binding is back.
    app.unbind(Kind::Status).await;

    let mut by_id = HashMap::new();
    for case in &cases {
        for secret in &case.secrets {
            assert!(contains(&case.body, secret), "{}: {secret}", case.name);
        }
        let response = app.post_hook(case.body.clone()).await;
        assert_eq!(response.status(), 202, "{}: a new event", case.name);
        let answer: Value = response.json().await.unwrap();
        by_id.insert(answer["id"].as_str().unwrap().to_owned(), case);
    }

    app.wait_dead(1, Duration::from_secs(20)).await;
    let dead = app.store.dead_list(10).unwrap();
    assert_eq!(dead.len(), 1);
    let letter = &dead[0].event;
    assert_eq!(letter.meta.kind, Kind::Status);
    check(
        by_id[&letter.meta.id.to_string()],
        "dead letter",
        &letter.body,
    );

    let published = drain(&app).await;
    assert_eq!(published.len(), cases.len() - 1, "all but the dead letter");
    for (id, bytes) in &published {
        let case = by_id
            .get(id)
            .unwrap_or_else(|| panic!("published id {id} was not posted"));
        check(case, "published message", bytes);
    }

    // Replayed from the kept delivered events and requeued from the dead store: the same bytes.
    app.rebind(Kind::Status).await;
    let replayed = app
        .store
        .replay_delivered(&ReplayFilter::default())
        .await
        .unwrap();
    assert_eq!(replayed, cases.len() - 1);
    assert_eq!(app.store.requeue_dead(None).await.unwrap(), 1);
    let again = drain(&app).await;
    assert_eq!(again.len(), cases.len());
    for (id, bytes) in &again {
        check(by_id[id], "replayed message", bytes);
        if let Some(first) = published.get(id) {
            assert_eq!(
                bytes, first,
                "{}: replayed as first published",
                by_id[id].name
            );
        }
    }

    // On disk: every file of the data dir, as the relay wrote it.
    let mut stored = Vec::new();
    files_under(&app.settings.storage.path, &mut stored);
    for case in &cases {
        for secret in &case.secrets {
            assert!(
                !contains(&stored, secret),
                "the data dir holds {secret:?} ({})",
                case.name
            );
        }
        // The bodies are there, readable: a secret would have been found.
        for value in &case.kept {
            assert!(
                contains(&stored, value),
                "{} not found in the data dir",
                case.name
            );
        }
    }
}
