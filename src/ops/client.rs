//! The operators' subcommands (`stats`, `dead …`, `replay`, `events`): on the data directory when no relay
//! holds it, else through the running relay's admin API. Output is JSON, for people and `jq`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde::de::DeserializeOwned;
use serde::Serialize;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::{AdminSettings, Settings};
use crate::ops::events::{self, EventDetail, EventPage, EventQuery};
use crate::ops::{
    self, DeadDetail, DeadReplayRequest, DeadSummary, OpsError, ReplayRequest, Replayed, Stats,
};
use crate::report::chain;
use crate::store::{Store, StoreError};

/// Time-out of one admin API call; a replay of many events is one call.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead letters (events RabbitMQ refused), oldest first, without bodies.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one dead letter with its body; ID is its number (seq) or its 32-hex event id.
    Show { id: String },
    /// Put dead letters back into the outbox, to be published again with their original ids.
    Replay {
        /// Numbers (seq) or event ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        #[arg(long)]
        all: bool,
    },
}

/// What a command is asked to do, independent of where it runs.
#[derive(Debug)]
pub enum Request {
    Stats,
    DeadList {
        limit: usize,
    },
    DeadShow {
        id: String,
    },
    DeadReplay(DeadReplayRequest),
    Replay(ReplayRequest),
    /// `events`: a search, printed as JSON or as a table for people.
    Events {
        query: EventQuery,
        json: bool,
    },
    /// `events --show ID`: one event and its timeline, as JSON or as text for people.
    EventShow {
        id: String,
        json: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    #[error("no data directory at {0}")]
    NoData(String),
    #[error(
        "the store is in use by a running relay, and its admin API is off: set admin.token \
         (and admin.bind) in the relay's config to use this command while it runs"
    )]
    NoAdmin,
    #[error("admin API at {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("admin API answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("admin API sent an unreadable answer")]
    Decode(#[source] serde_json::Error),
    #[error("cannot encode the request")]
    Encode(#[source] serde_json::Error),
}

/// `stats`, `dead …` and `replay`: prints the answer as JSON; exit 1 on failure.
pub async fn run(config: Option<&Path>, request: Request) -> ExitCode {
    let settings = match Settings::load(config) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {}", chain(&err));
            return ExitCode::from(2);
        }
    };
    match execute(&settings, request).await {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {}", chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn pretty<T: Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(CliError::Encode)
}

async fn execute(settings: &Settings, request: Request) -> Result<String, CliError> {
    let path = &settings.storage.path;
    if !path.exists() {
        return Err(CliError::NoData(path.display().to_string()));
    }
    match Store::open(&settings.storage) {
        Ok(store) => {
            let text = local(&store, request).await;
            // Release the directory (writer joined, last flush done) before exiting.
            drop(store);
            text
        }
        Err(err) if err.is_lock_held() => {
            let admin = settings.admin.clone();
            tokio::task::spawn_blocking(move || remote(&admin, request))
                .await
                .unwrap_or_else(|e| {
                    Err(CliError::Refused {
                        status: 0,
                        body: e.to_string(),
                    })
                })
        }
        Err(err) => Err(err.into()),
    }
}

async fn local(store: &Store, request: Request) -> Result<String, CliError> {
    match request {
        Request::Stats => pretty(&ops::stats(store)),
        Request::DeadList { limit } => pretty(&ops::dead_list(store, limit)?),
        Request::DeadShow { id } => pretty(&ops::dead_show(store, &id)?),
        Request::DeadReplay(req) => {
            let replayed = ops::dead_replay(store, &req).await?;
            store.flush().await?;
            pretty(&replayed)
        }
        Request::Replay(req) => {
            let replayed = ops::replay(store, &req).await?;
            store.flush().await?;
            pretty(&replayed)
        }
        Request::Events { query, json } => shown(&events::events_search(store, &query)?, json),
        Request::EventShow { id, json } => detail(&events::event_show(store, &id)?, json),
    }
}

/// One event as JSON, or as text: no personal data is in either.
fn detail(event: &EventDetail, json: bool) -> Result<String, CliError> {
    if json {
        return pretty(event);
    }
    Ok(event_text(event))
}

/// One event for people: what it is, then its timeline in time order.
pub fn event_text(d: &EventDetail) -> String {
    let e = &d.summary;
    let dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let kind = match &e.change {
        Some(change) => format!("{} · {change}", e.kind),
        None => e.kind.clone(),
    };
    let mut out = String::new();
    for (name, value) in [
        ("EVENT", e.event_id.clone()),
        ("STATE", e.state.clone()),
        ("RECEIVED", e.received_at.clone()),
        ("PUBLISHED", dash(d.published_at.as_deref())),
        ("CONFIRMED", dash(d.confirmed_at.as_deref())),
        ("CONNECTION", e.connection.clone()),
        ("COMPANY", dash(e.company.map(|c| c.to_string()).as_deref())),
        ("KIND", kind),
        ("TICKET", dash(e.ticket.as_deref())),
        ("WHATSAPP ID", dash(e.wa_id.as_deref())),
        ("FORMAT", dash(e.format.as_deref())),
        ("BYTES", e.size.to_string()),
        ("DUPLICATES", e.duplicates.count.to_string()),
    ] {
        out.push_str(&format!("{name:<12}  {value}\n"));
    }
    out.push_str("TIMELINE\n");
    for step in &d.timeline {
        out.push_str(&format!("  {:<24}  {:<10}", step.at, step.step));
        if let Some(detail) = &step.detail {
            out.push_str(&format!("  {detail}"));
        }
        out.push('\n');
    }
    out.pop();
    out
}

/// A page of events as JSON, or as a table: no personal data is in either.
fn shown(page: &EventPage, json: bool) -> Result<String, CliError> {
    if json {
        return pretty(page);
    }
    Ok(events_table(page))
}

/// One line per event, newest first, then where the next page starts.
pub fn events_table(page: &EventPage) -> String {
    let mut out = format!(
        "{:<24}  {:<32}  {:<10}  {:<8}  {:<10}  {:<14}  {:>8}  {:>4}  {:<12}  {}\n",
        "RECEIVED",
        "EVENT",
        "STATE",
        "TICKET",
        "KIND",
        "CHANGE",
        "BYTES",
        "DUPS",
        "CONNECTION",
        "WHATSAPP ID"
    );
    for e in &page.events {
        out.push_str(&format!(
            "{:<24}  {:<32}  {:<10}  {:<8}  {:<10}  {:<14}  {:>8}  {:>4}  {:<12}  {}\n",
            e.received_at,
            e.event_id,
            e.state,
            e.ticket.as_deref().unwrap_or("-"),
            e.kind,
            e.change.as_deref().unwrap_or("-"),
            e.size,
            e.duplicates.count,
            e.connection,
            e.wa_id.as_deref().unwrap_or("-"),
        ));
    }
    match &page.next_cursor {
        Some(cursor) => out.push_str(&format!(
            "{} events; more with --cursor {cursor}",
            page.events.len()
        )),
        None => out.push_str(&format!("{} events", page.events.len())),
    }
    out
}

/// The same request through `http://{admin.bind}/admin/…`.
fn remote(admin: &AdminSettings, request: Request) -> Result<String, CliError> {
    let Some(token) = &admin.token else {
        return Err(CliError::NoAdmin);
    };
    // A wildcard bind is reached on loopback.
    let mut host = admin.bind;
    if host.ip().is_unspecified() {
        host.set_ip(match host {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let client = Client {
        base: format!("http://{host}"),
        auth: format!("Bearer {}", token.expose()),
        agent: ureq::Agent::config_builder()
            .timeout_global(Some(ADMIN_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into(),
    };
    match request {
        Request::Stats => pretty(&client.get::<Stats>("/admin/stats")?),
        Request::DeadList { limit } => {
            pretty(&client.get::<Vec<DeadSummary>>(&format!("/admin/dead?limit={limit}"))?)
        }
        Request::DeadShow { id } => {
            if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(OpsError::BadId(id).into());
            }
            pretty(&client.get::<DeadDetail>(&format!("/admin/dead/{id}"))?)
        }
        Request::DeadReplay(req) => {
            pretty(&client.post::<_, Replayed>("/admin/dead/replay", &req)?)
        }
        Request::Replay(req) => pretty(&client.post::<_, Replayed>("/admin/replay", &req)?),
        Request::Events { query, json } => {
            let page = client.get_query::<EventPage>("/admin/events", &query.to_params())?;
            shown(&page, json)
        }
        Request::EventShow { id, json } => {
            // Checked here too: the id goes into the path.
            events::parse_event_id(&id)?;
            detail(
                &client.get::<EventDetail>(&format!("/admin/events/{id}"))?,
                json,
            )
        }
    }
}

struct Client {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

impl Client {
    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.get_query(path, &[])
    }

    /// A GET with query parameters (encoded by the client).
    fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<T, CliError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .get(&url)
            .query_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
            .header("authorization", &self.auth)
            .call()
            .map_err(|source| CliError::Http {
                url: url.clone(),
                source,
            })?;
        decode(url, response)
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, CliError> {
        let url = format!("{}{path}", self.base);
        let body = serde_json::to_vec(body).map_err(CliError::Encode)?;
        let response = self
            .agent
            .post(&url)
            .header("authorization", &self.auth)
            .header("content-type", "application/json")
            .send(&body[..])
            .map_err(|source| CliError::Http {
                url: url.clone(),
                source,
            })?;
        decode(url, response)
    }
}

fn decode<T: DeserializeOwned>(
    url: String,
    mut response: ureq::http::Response<ureq::Body>,
) -> Result<T, CliError> {
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|source| CliError::Http { url, source })?;
    if status != 200 {
        return Err(CliError::Refused { status, body: text });
    }
    serde_json::from_str(&text).map_err(CliError::Decode)
}
