//! The status page in a real browser: tests/browser/status.mjs drives Debian's headless Chromium
//! (playwright-core) against a relay whose broker connection runs through a proxy this test can
//! cut; it asks this side, line by line, to post webhooks, make a dead letter, check that a
//! replayed one was published, post a message of its own (and again, a duplicate), and cut or
//! restore the broker.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::types::FieldTable;
use serde_json::Value;
use whaticket_relay::config::AmqpUrl;
use whaticket_relay::event::Kind;

use crate::helpers::*;
use crate::ops::{with_admin, ADMIN_TOKEN};

/// What the posted bodies carry that no view may show until a body is opened.
const PERSONAL_NAME: &str = "Maria Personalname";
const PERSONAL_PHONE: &str = "5511900001111";
/// A value under a redacted key: never shown, not even in an opened body.
const SECRET_VALUE: &str = "s3cret-webhook-value";
/// The whole browser run; each of its waits is 30 s at most.
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails with how to install what is missing: this test is never skipped.
fn preflight(chromium: &Path) {
    let how = "install it with `.ci/run` (or: apt-get install -y chromium nodejs npm && \
               (cd tests/browser && npm ci))";
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is not installed ({node:?}); {how}"
    );
    assert!(
        chromium.exists(),
        "{} is missing (Debian's chromium package); {how}",
        chromium.display()
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules/playwright-core is missing; {how}"
    );
}

/// A status event of a ticket of its own, carrying personal values.
fn status_body(ticket: i64) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&fixture("status-open.json")).unwrap();
    body["chamadoId"] = ticket.into();
    body["sender"] = PERSONAL_PHONE.into();
    body["ticketData"]["id"] = ticket.into();
    body["ticketData"]["contact"]["name"] = PERSONAL_NAME.into();
    serde_json::to_vec(&body).unwrap()
}

/// A message carrying personal values and a secret under a redacted key.
fn message_body() -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&fixture("message-start.json")).unwrap();
    body["name"] = PERSONAL_NAME.into();
    body["sender"] = PERSONAL_PHONE.into();
    body["token"] = SECRET_VALUE.into();
    serde_json::to_vec(&body).unwrap()
}

/// A message of a ticket of its own with its own WhatsApp id (`wid`), carrying personal values
/// and a secret under a redacted key.
fn indexed_message(ticket: i64) -> (Vec<u8>, String) {
    let wa_id = format!("3EB0E7E47C{ticket:010}");
    let mut body: Value = serde_json::from_slice(&fixture("message-from-internal.json")).unwrap();
    body["mensagem"]["wid"] = wa_id.clone().into();
    body["mensagem"]["ticketId"] = ticket.into();
    body["chamadoId"] = ticket.into();
    body["ticketData"]["id"] = ticket.into();
    body["ticketData"]["contact"]["name"] = PERSONAL_NAME.into();
    body["name"] = PERSONAL_NAME.into();
    body["sender"] = PERSONAL_PHONE.into();
    body["token"] = SECRET_VALUE.into();
    (serde_json::to_vec(&body).unwrap(), wa_id)
}

/// The browser side's requests, answered `ok ...` or `fail <why>`.
struct Driver<'a> {
    app: &'a TestApp,
    proxy: &'a TcpProxy,
    next_ticket: i64,
    /// The last `message` posted, for `duplicate`.
    last_message: Option<Vec<u8>>,
}

impl Driver<'_> {
    async fn answer(&mut self, request: &str) -> Result<String, String> {
        let words: Vec<&str> = request.split_whitespace().collect();
        match words.as_slice() {
            // `n` new events, then the last one again (a duplicate) and one with a wrong token;
            // answers the last one's ticket.
            ["post", n] => {
                let n: i64 = n.parse().map_err(|_| format!("bad count {n}"))?;
                let mut body = Vec::new();
                for _ in 0..n {
                    self.next_ticket += 1;
                    body = status_body(self.next_ticket);
                    let status = self.app.post_hook(body.clone()).await.status();
                    if status != 202 {
                        return Err(format!("webhook answered {status}"));
                    }
                }
                let again = self.app.post_hook(body.clone()).await.status();
                let wrong = self
                    .app
                    .http
                    .post(self.app.hook_url(CONNECTION, "not-the-token"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .status();
                if again != 200 || wrong != 401 {
                    return Err(format!("duplicate answered {again}, wrong token {wrong}"));
                }
                Ok(self.next_ticket.to_string())
            }
            // A new message: its event id, WhatsApp id and ticket.
            ["message"] => {
                let ticket = 7001;
                let (body, wa_id) = indexed_message(ticket);
                let response = self.app.post_hook(body.clone()).await;
                if response.status() != 202 {
                    return Err(format!("message answered {}", response.status()));
                }
                let answer: Value = response.json().await.map_err(|e| e.to_string())?;
                let id = answer["id"]
                    .as_str()
                    .ok_or("no id in the answer")?
                    .to_owned();
                self.last_message = Some(body);
                Ok(format!("{id} {wa_id} {ticket}"))
            }
            ["duplicate"] => {
                let body = self.last_message.clone().ok_or("no message posted yet")?;
                let status = self.app.post_hook(body).await.status();
                if status == 200 {
                    Ok(String::new())
                } else {
                    Err(format!("the duplicate answered {status}"))
                }
            }
            ["deadletter"] => {
                self.app.unbind(Kind::Message).await;
                let response = self.app.post_hook(message_body()).await;
                if response.status() != 202 {
                    return Err(format!("message answered {}", response.status()));
                }
                let id = response.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                self.app.wait_dead(1, Duration::from_secs(20)).await;
                let seq = self.app.store.dead_list(1).unwrap()[0].seq;
                self.app
                    .channel
                    .queue_bind(
                        self.app.queue(Kind::Message).as_str().into(),
                        self.app.settings.amqp.exchange.as_str().into(),
                        "message.#".into(),
                        Default::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| format!("rebind: {e}"))?;
                Ok(format!("{seq} {id}"))
            }
            ["published", id] => {
                let message = self.app.take(&self.app.queue(Kind::Message)).await;
                let got = message.delivery.properties.message_id().as_ref();
                let got = got.map(|s| s.to_string()).unwrap_or_default();
                let body = String::from_utf8_lossy(&message.delivery.data);
                if body.contains(SECRET_VALUE) {
                    return Err("the replayed body carries the redacted secret".into());
                }
                if got == *id {
                    Ok(String::new())
                } else {
                    Err(format!("published message_id {got}, want {id}"))
                }
            }
            // Waits until the kind's queue holds `n` messages.
            ["queued", kind, n] => {
                let kind = Kind::from_name(kind).ok_or_else(|| format!("no kind {kind}"))?;
                let n: u32 = n.parse().map_err(|_| format!("bad count {n}"))?;
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let len = self.app.queue_len(&self.app.queue(kind)).await;
                    if len == n {
                        return Ok(String::new());
                    }
                    if Instant::now() > deadline {
                        return Err(format!("{kind} queue holds {len}, want {n}"));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            ["cut"] => {
                self.proxy.cut();
                Ok(String::new())
            }
            ["restore"] => {
                self.proxy.restore();
                Ok(String::new())
            }
            _ => Err(format!("unknown request {request:?}")),
        }
    }
}

fn reply(stdin: &mut ChildStdin, answer: Result<String, String>) {
    let line = match answer {
        Ok(rest) if rest.is_empty() => "ok".to_owned(),
        Ok(rest) => format!("ok {rest}"),
        Err(why) => format!("fail {why}"),
    };
    writeln!(stdin, "{line}")
        .and_then(|()| stdin.flush())
        .expect("browser script's stdin");
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn status_page_in_a_real_browser() {
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    preflight(&chromium);
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser");

    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    // Its dead letter needs a route nobody repairs: the relay does not declare here.
    let mut options = with_admin(Options::new().topology_managed_elsewhere());
    options.settings.amqp.url = AmqpUrl::new(proxy.url());
    let app = spawn_app_with(options).await;
    app.wait_ready().await;
    let admin_port = app.admin_port.expect("admin listener");

    let mut child = Command::new("node")
        .arg(browser_dir().join("status.mjs"))
        .env(
            "STATUS_URL",
            format!("http://127.0.0.1:{admin_port}/status"),
        )
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("CONNECTION", CONNECTION)
        .env("SHOTS_DIR", &shots)
        .env("CHROMIUM", &chromium)
        .env("PERSONAL", format!("{PERSONAL_NAME},{PERSONAL_PHONE}"))
        .env("MAX_OUTBOX", app.settings.storage.max_outbox.to_string())
        .env("SECRET", SECRET_VALUE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start node");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    // The script's output is read on a thread of its own: the pipe blocks.
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut driver = Driver {
        app: &app,
        proxy: &proxy,
        next_ticket: 9000,
        last_message: None,
    };
    let deadline = tokio::time::Instant::now() + RUN_LIMIT;
    let mut transcript = Vec::new();
    loop {
        let line = match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => {
                kill(&mut child);
                panic!(
                    "the browser test did not finish within {RUN_LIMIT:?}:\n{}",
                    transcript.join("\n")
                );
            }
        };
        println!("browser: {line}");
        if let Some(request) = line.strip_prefix('@') {
            let answer = driver.answer(request).await;
            transcript.push(format!("{line} -> {answer:?}"));
            reply(&mut stdin, answer);
        } else {
            transcript.push(line);
        }
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .expect("node");
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{}",
        transcript.join("\n")
    );
    for shot in [
        "status-desktop.png",
        "status-dead-letter.png",
        "status-phone.png",
        "status-broker-down.png",
        "status-page.png",
        "status-login-pt-BR.png",
        "status-pt-BR.png",
        "status-en.png",
        "events-desktop.png",
        "events-list-pt-BR.png",
        "events-detail-pt-BR.png",
        "events-list-en.png",
        "events-detail-en.png",
        "events-phone.png",
    ] {
        let path = shots.join(shot);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 1000,
            "screenshot {} missing or empty",
            path.display()
        );
    }
}

/// Logs in over HTTP as the form does; returns the session cookie (`name=value`) and its CSRF token.
async fn http_login(app: &TestApp, base: &str) -> (String, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(format!("{base}/status/login"))
        .header("origin", base)
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/status"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page = app
        .http
        .get(format!("{base}/status"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split(r#"<meta name="csrf-token" content=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_owned();
    assert_eq!(csrf.len(), 64, "{csrf}");
    (cookie, csrf)
}

#[tokio::test]
async fn status_page_needs_a_session_and_csrf_and_shows_no_personal_data() {
    let app = spawn_app_with(with_admin(Options::new())).await;
    let base = format!("http://127.0.0.1:{}", app.admin_port.unwrap());
    assert_eq!(app.post_hook(status_body(1)).await.status(), 202);

    // Not on the public webhook port.
    assert_eq!(app.get("/status").await.status(), 404);
    // A login from another origin, or naming none, is refused before the token is looked at.
    for origin in [Some("http://evil.example"), None] {
        let mut request = app
            .http
            .post(format!("{base}/status/login"))
            .form(&[("token", ADMIN_TOKEN)]);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "origin {origin:?}");
        assert!(response.headers().get("set-cookie").is_none());
    }
    // The JSON needs a session (or, at /admin/status, the bearer token).
    let anonymous = app
        .http
        .get(format!("{base}/status/api/state"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let forged = app
        .http
        .get(format!("{base}/status/api/state"))
        .header("cookie", format!("relay_status={}", "ab".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let bearer = app
        .http
        .get(format!("{base}/admin/status"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let state: Value = bearer.json().await.unwrap();
    assert_eq!(state["connections"][0]["name"], CONNECTION);
    assert_eq!(state["connections"][0]["hour"]["accepted"], 1);
    assert_eq!(
        state["connections"][0]["formats"]["whaticket-saas"], 1,
        "{state}"
    );
    assert_eq!(state["store"]["lost_records"], 0, "{state}");
    assert_eq!(state["store"]["damaged_bytes"], 0, "{state}");

    let (cookie, csrf) = http_login(&app, &base).await;
    let state_with_cookie = || {
        app.http
            .get(format!("{base}/status/api/state"))
            .header("cookie", &cookie)
            .send()
    };
    let state = state_with_cookie().await.unwrap();
    assert_eq!(state.status(), 200);
    assert_eq!(state.headers()["cache-control"], "no-store");
    let text = state.text().await.unwrap();
    for personal in [PERSONAL_NAME, PERSONAL_PHONE] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }

    // A state-changing request needs the CSRF token and the page's own origin.
    let replay = |csrf: Option<&str>, origin: &str| {
        let mut request = app
            .http
            .post(format!("{base}/status/api/replay"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .json(&serde_json::json!({"since_ms": 0}));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    assert_eq!(replay(None, &base).await.unwrap().status(), 403);
    let wrong = "0".repeat(64);
    assert_eq!(replay(Some(&wrong), &base).await.unwrap().status(), 403);
    assert_eq!(
        replay(Some(&csrf), "http://evil.example")
            .await
            .unwrap()
            .status(),
        403
    );
    let done = replay(Some(&csrf), &base).await.unwrap();
    assert_eq!(done.status(), 200);
    let replayed: Value = done.json().await.unwrap();
    assert!(replayed["replayed"].is_u64(), "{replayed}");

    // Logging out ends the session on the server, not only in the browser.
    let logout = app
        .http
        .post(format!("{base}/status/logout"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let after = state_with_cookie().await.unwrap();
    assert_eq!(after.status(), 401);
}

#[tokio::test]
async fn status_page_speaks_the_readers_language_and_the_root_leads_to_it() {
    let app = spawn_app_with(with_admin(Options::new())).await;
    let base = format!("http://127.0.0.1:{}", app.admin_port.unwrap());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str, accept: Option<&str>, cookie: Option<&str>| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(accept) = accept {
            request = request.header("accept-language", accept);
        }
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };

    // `GET /` on the admin listener leads to the page; the public port still knows nothing of it.
    let root = get("/", None, None).await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/status");
    assert_eq!(app.get("/").await.status(), 404);

    // The login form in the browser's language: any Portuguese ranked first, else English.
    for (accept, lang, says) in [
        (
            Some("pt-BR,pt;q=0.9,en;q=0.8"),
            "pt-BR",
            "Token de administração",
        ),
        (Some("pt-PT"), "pt-BR", "Entrar"),
        (Some("en-US,en;q=0.9,pt;q=0.5"), "en", "Admin token"),
        (Some("de-DE"), "en", "Log in"),
        (None, "en", "Log in"),
    ] {
        let response = get("/status", accept, None).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-language"], lang, "{accept:?}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains(&format!(r#"<html lang="{lang}">"#)),
            "{accept:?}"
        );
        assert!(html.contains(says), "{accept:?}: {html}");
        assert!(
            !html.contains("{{"),
            "{accept:?}: an unfilled field in {html}"
        );
    }

    // The switch is a cookie the server reads before the header; an unknown code sets none.
    let switched = get("/status/lang/pt-BR", Some("en"), None).await.unwrap();
    assert_eq!(switched.status(), 303);
    assert_eq!(switched.headers()["location"], "/status");
    let set_cookie = switched.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["relay_lang=pt-BR", "Path=/status", "HttpOnly", "Max-Age="] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let unknown = get("/status/lang/xx", None, None).await.unwrap();
    assert_eq!(unknown.status(), 303);
    assert!(unknown.headers().get("set-cookie").is_none());
    let remembered = get("/status", Some("en-US"), Some("relay_lang=pt-BR"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        remembered.contains(r#"<html lang="pt-BR">"#),
        "{remembered}"
    );

    // Server-side notices in the chosen language: a wrong token, and a login from elsewhere.
    let wrong = client
        .post(format!("{base}/status/login"))
        .header("origin", &base)
        .header("accept-language", "pt-BR")
        .form(&[("token", "not-the-admin-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 303);
    let refused = get("/status?refused", Some("pt-BR"), None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(refused.contains("Token incorreto."), "{refused}");
    let foreign = client
        .post(format!("{base}/status/login"))
        .header("origin", "http://evil.example")
        .header("cookie", "relay_lang=pt-BR")
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let text = foreign.text().await.unwrap();
    assert!(
        text.contains("precisa ser enviado a partir desta página"),
        "{text}"
    );

    // The logged-in page: its strings and the catalogue its script formats with, in one language.
    let (cookie, _) = http_login(&app, &base).await;
    for (lang, heading, other) in [
        ("pt-BR", "Conexões", "Connections"),
        ("en", "Connections", "Conexões"),
    ] {
        let page = get(
            "/status",
            None,
            Some(&format!("{cookie}; relay_lang={lang}")),
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        assert!(
            page.contains(heading) && !page.contains(other),
            "{lang}: {page}"
        );
        let catalogue = page
            .split(r#"<script type="application/json" id="i18n">"#)
            .nth(1)
            .and_then(|rest| rest.split("</script>").next())
            .expect("the page carries its catalogue");
        let catalogue: Value = serde_json::from_str(catalogue).unwrap();
        assert_eq!(catalogue["conn.title"], heading, "{lang}");
    }
}

/// The Portuguese quick start quotes the README's two commands as they are, and the README's top
/// section points to it.
#[test]
fn the_portuguese_quick_start_quotes_the_readme_commands() {
    let read = |path: &str| {
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let first_sh = |text: &str| {
        text.split("```sh\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .map(str::to_owned)
            .expect("a sh block")
    };
    let readme = read("README.md");
    let quick = read("docs/pt-BR/README.md");
    let commands = first_sh(&readme);
    assert_eq!(commands.lines().count(), 2, "{commands}");
    assert_eq!(first_sh(&quick), commands);
    let top = readme.split("\n## ").next().unwrap();
    assert!(top.contains("(docs/pt-BR/README.md)"), "{top}");
    assert!(quick.contains("**Conexões → (seu WhatsApp) → Webhook**"));
    assert!(quick.contains("http://127.0.0.1:8081/"));
}

/// The Events view's API: behind the session (every route) and the CSRF check (the replay), no
/// personal data in a search's answer, the body only where asked for (redacted), and an event
/// nobody knows is a 404.
#[tokio::test]
async fn status_events_need_a_session_and_csrf_and_an_unknown_event_is_not_found() {
    let app = spawn_app_with(with_admin(Options::new())).await;
    app.wait_ready().await;
    let base = format!("http://127.0.0.1:{}", app.admin_port.unwrap());
    let (message, wa_id) = indexed_message(7101);
    let posted = app.post_hook(message).await;
    assert_eq!(posted.status(), 202);
    let id = posted.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = app.take(&app.queue(Kind::Message)).await;
    assert_eq!(
        first
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some(id.as_str())
    );

    let get = |path: String, cookie: Option<&str>| {
        let mut request = app.http.get(format!("{base}{path}"));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let reads = [
        "/status/api/events".to_owned(),
        "/status/api/events?ticket=7101".to_owned(),
        format!("/status/api/events/{id}"),
        format!("/status/api/events/{id}/body"),
    ];
    for path in &reads {
        let anonymous = get(path.clone(), None).await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
        let forged = format!("relay_status={}", "ab".repeat(32));
        assert_eq!(
            get(path.clone(), Some(&forged)).await.unwrap().status(),
            401,
            "{path}"
        );
    }
    let (cookie, csrf) = http_login(&app, &base).await;
    let replay = |event: &str, csrf: Option<&str>, origin: &str| {
        let mut request = app
            .http
            .post(format!("{base}/status/api/events/{event}/replay"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .json(&serde_json::json!({}));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    let anonymous = app
        .http
        .post(format!("{base}/status/api/events/{id}/replay"))
        .header("origin", &base)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Found by its ticket and by its WhatsApp id (once the index has it: within a second); the
    // answer carries no personal value.
    for query in ["ticket=7101".to_owned(), format!("id={wa_id}")] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let text = loop {
            let found = get(format!("/status/api/events?{query}"), Some(&cookie))
                .await
                .unwrap();
            assert_eq!(found.status(), 200, "{query}");
            assert_eq!(found.headers()["cache-control"], "no-store");
            let text = found.text().await.unwrap();
            if text.contains(&id) || Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for personal in [PERSONAL_NAME, PERSONAL_PHONE, SECRET_VALUE] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
        let page: Value = serde_json::from_str(&text).unwrap();
        let events = page["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{query}: {page}");
        assert_eq!(events[0]["event_id"], id.as_str(), "{page}");
        assert_eq!(events[0]["wa_id"], wa_id.as_str(), "{page}");
    }
    let detail: Value = get(format!("/status/api/events/{id}"), Some(&cookie))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["event_id"], id.as_str(), "{detail}");
    assert_eq!(detail["timeline"][0]["step"], "received", "{detail}");
    // A query the relay cannot read is refused as such, behind the session too.
    let bad = get("/status/api/events?state=lost".to_owned(), Some(&cookie))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body = get(format!("/status/api/events/{id}/body"), Some(&cookie))
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    let body: Value = body.json().await.unwrap();
    let text = body["body_text"].as_str().unwrap();
    assert!(
        text.contains("[redacted]") && text.contains(PERSONAL_NAME),
        "{text}"
    );
    assert!(!text.contains(SECRET_VALUE), "{text}");

    // An unknown event: 404 to every route, the replay's included (its CSRF check passed).
    let unknown = "0".repeat(32);
    for path in [
        format!("/status/api/events/{unknown}"),
        format!("/status/api/events/{unknown}/body"),
    ] {
        let response = get(path.clone(), Some(&cookie)).await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    assert_eq!(
        replay(&unknown, Some(&csrf), &base).await.unwrap().status(),
        404
    );

    // The replay needs the CSRF token and the page's origin; then it publishes the event again
    // (once the index has its confirm: the flusher takes it within a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let detail: Value = get(format!("/status/api/events/{id}"), Some(&cookie))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if detail["state"] == "confirmed" {
            break;
        }
        assert!(Instant::now() < deadline, "never confirmed: {detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replay(&id, None, &base).await.unwrap().status(), 403);
    let wrong = "0".repeat(64);
    assert_eq!(
        replay(&id, Some(&wrong), &base).await.unwrap().status(),
        403
    );
    assert_eq!(
        replay(&id, Some(&csrf), "http://evil.example")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(app.queue_len(&app.queue(Kind::Message)).await, 0);
    let done = replay(&id, Some(&csrf), &base).await.unwrap();
    assert_eq!(done.status(), 200);
    assert_eq!(done.json::<Value>().await.unwrap()["replayed"], 1);
    let again = app.take(&app.queue(Kind::Message)).await;
    assert_eq!(
        again
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some(id.as_str())
    );
}
