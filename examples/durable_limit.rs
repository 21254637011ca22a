//! The durable limit: the least a webhook relay can do per event and still keep its promise, as a yardstick.
//!
//! `cargo bench --bench relay` runs it as its own process under the relay's saturation load and
//! reports the relay's throughput and CPU per event as ratios to it (README "Benchmark"). It does
//! this and nothing else: actix-web (the relay's HTTP stack) takes a `POST` on any path and numbers
//! it; one thread takes every body waiting, appends them length-prefixed to one file, calls
//! `fdatasync` once and only then answers each request 202 with its id, as the relay does (group
//! commit); then each body is published persistent with that id as `message_id` to one quorum
//! queue, publisher confirms on, at most 256 in flight, every confirm awaited. No parsing,
//! verification, dedup, routing by kind or retries: what is left is the durable minimum. The id is
//! what lets the bench's steady phase time each event from its send to its delivery.
//!
//! ```sh
//! cargo run --release --example durable_limit -- --port 8099 --queue limit --file /tmp/limit.log
//! ```
//!
//! With `--exchange <name>` it publishes as the relay does instead of bare to the queue: to a
//! durable topic exchange (declared, bound to the queue with `#`), with the relay's routing key,
//! properties and headers (`whaticket_relay::publish::properties`). The bench runs it both ways, so
//! that what the broker spends on the relay's message contract is told apart from the relay's own
//! cost.
//!
//! Flags can come from the environment too (`LIMIT_PORT`, `LIMIT_AMQP_URL`, `LIMIT_QUEUE`,
//! `LIMIT_FILE`, `LIMIT_EXCHANGE`). SIGTERM or ctrl-c stops it once what was accepted is
//! confirmed; it exits 1 if a publish was not confirmed (nack, return, error or time-out), so a
//! failure cannot pass unseen.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Parser;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::{mpsc as async_mpsc, oneshot};
use tokio::time::timeout;
use whaticket_relay::clock::now_ms;
use whaticket_relay::event::{Change, EventId, EventMeta, Format, Kind};
use whaticket_relay::publish::properties;

/// The relay's `amqp.max_in_flight` default.
const IN_FLIGHT: usize = 256;
/// The relay's `amqp.timeout` default, on every broker call.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// The relay's `server.max_body_bytes` default (actix's own default would refuse 256 KB+).
const MAX_BODY: usize = 1 << 20;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "LIMIT_PORT")]
    port: u16,
    #[arg(
        long,
        env = "LIMIT_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    #[arg(long, env = "LIMIT_QUEUE")]
    queue: String,
    /// The append-only file the bodies go to.
    #[arg(long, env = "LIMIT_FILE")]
    file: PathBuf,
    /// Publish as the relay does, through this topic exchange; bare to the queue when unset.
    #[arg(long, env = "LIMIT_EXCHANGE")]
    exchange: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum LimitError {
    #[error("data file: {0}")]
    File(#[source] std::io::Error),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("a broker call timed out")]
    Timeout(#[from] tokio::time::error::Elapsed),
    #[error("HTTP server: {0}")]
    Http(#[source] std::io::Error),
    #[error("{0}")]
    Stopped(&'static str),
    #[error("{0} publishes were not confirmed")]
    Unconfirmed(u64),
}

/// A body waiting for the group commit, its id, and where its 202 is released.
type Pending = (Body, oneshot::Sender<()>);

/// A numbered body: the number is its id (as the relay's event id, 32 hex digits).
type Body = (EventId, web::Bytes);

/// Numbers the requests in the order they arrive.
#[derive(Default)]
struct Ids(AtomicU64);

impl Ids {
    fn next(&self) -> EventId {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&n.to_be_bytes());
        EventId(id)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("durable_limit: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), LimitError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.file)
        .map_err(LimitError::File)?;
    let connection = timeout(
        BROKER_TIMEOUT,
        Connection::connect(&args.amqp_url, ConnectionProperties::default()),
    )
    .await??;
    let channel = connection.create_channel().await?;
    timeout(
        BROKER_TIMEOUT,
        declare(&channel, &args.queue, args.exchange.as_deref()),
    )
    .await??;

    let failures = Arc::new(AtomicU64::new(0));
    let (to_publish, published) = async_mpsc::unbounded_channel();
    let route = match args.exchange {
        Some(exchange) => Route::RelayContract { exchange },
        None => Route::Bare { queue: args.queue },
    };
    let publisher = tokio::spawn(publish(channel, route, published, failures.clone()));
    let (to_commit, committed) = mpsc::channel::<Pending>();
    // A thread of its own for its whole life (tokio's blocking pool), awaitable at the end.
    let committer = tokio::task::spawn_blocking(move || group_commit(file, committed, to_publish));

    // Bound only now, so a client that can connect finds the queue declared.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let to_commit = web::Data::new(to_commit);
    let ids = web::Data::new(Ids::default());
    HttpServer::new(move || {
        App::new()
            .app_data(to_commit.clone())
            .app_data(ids.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .service(web::resource("/{path:.*}").route(web::post().to(accept)))
    })
    .workers(workers)
    // As the relay: longer than the clients' idle timeout, so the client closes idle connections.
    .keep_alive(Duration::from_secs(75))
    .bind(("127.0.0.1", args.port))
    .map_err(LimitError::Http)?
    .run()
    .await
    .map_err(LimitError::Http)?;

    // The server is gone with its senders: the committer ends, then the publisher drains.
    let committed = committer
        .await
        .map_err(|_| LimitError::Stopped("the group commit thread panicked"))?;
    let drained = publisher.await;
    let _ = connection.close(200, "stopped".into()).await;
    committed?;
    drained.map_err(|_| LimitError::Stopped("the publisher panicked"))?;
    match failures.load(Ordering::Relaxed) {
        0 => Ok(()),
        n => Err(LimitError::Unconfirmed(n)),
    }
}

async fn declare(
    channel: &Channel,
    queue: &str,
    exchange: Option<&str>,
) -> Result<(), lapin::Error> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), durable, arguments)
        .await?;
    if let Some(exchange) = exchange {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Where each body goes, and with what.
enum Route {
    /// To the queue through the default exchange, persistent and nothing else.
    Bare { queue: String },
    /// Through the topic exchange with what the relay sends with an event: its routing key,
    /// properties and headers (a Whaticket message's, with a fresh id per body).
    RelayContract { exchange: String },
}

impl Route {
    /// The exchange, routing key and properties of the body numbered `id`.
    fn publish_args(&self, id: EventId) -> (&str, String, BasicProperties) {
        match self {
            Route::Bare { queue } => (
                "",
                queue.clone(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(id.hex().as_str().into()),
            ),
            Route::RelayContract { exchange } => {
                let seq = u64::from_be_bytes(id.0[8..].try_into().unwrap_or_default());
                let meta = EventMeta {
                    id,
                    kind: Kind::Message,
                    connection: "limit".to_owned(),
                    action: Some("start".to_owned()),
                    format: Some(Format::WhaticketSaas),
                    company_id: Some(1),
                    ticket_id: Some(1000 + (seq % 2000) as i64),
                    from_me: Some(false),
                    received_at_ms: now_ms(),
                    change: Some(Change::Created),
                    body: Default::default(),
                };
                (exchange, meta.routing_key(), properties(&meta))
            }
        }
    }
}

/// Hands the body to the group commit and answers 202 with its id once it is on disk.
async fn accept(
    body: web::Bytes,
    commit: web::Data<mpsc::Sender<Pending>>,
    ids: web::Data<Ids>,
) -> HttpResponse {
    let id = ids.next();
    let (durable, on_disk) = oneshot::channel();
    if commit.send(((id, body), durable)).is_err() {
        return HttpResponse::ServiceUnavailable().finish();
    }
    match on_disk.await {
        Ok(()) => HttpResponse::Accepted()
            .content_type("application/json")
            .body(format!("{{\"id\":\"{}\"}}", id.hex().as_str())),
        // The write or the fdatasync failed: nothing may be promised.
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// One write and one `fdatasync` for every body waiting, then their 202s, then the publisher.
fn group_commit(
    mut file: File,
    bodies: mpsc::Receiver<Pending>,
    publisher: async_mpsc::UnboundedSender<Body>,
) -> Result<(), LimitError> {
    let mut batch: Vec<Pending> = Vec::new();
    let mut buffer = Vec::new();
    while let Ok(first) = bodies.recv() {
        batch.push(first);
        batch.extend(bodies.try_iter());
        buffer.clear();
        for ((_, body), _) in &batch {
            buffer.extend_from_slice(&(body.len() as u64).to_le_bytes());
            buffer.extend_from_slice(body);
        }
        // On failure the batch is dropped unanswered, so its requests get 500.
        file.write_all(&buffer).map_err(LimitError::File)?;
        file.sync_data().map_err(LimitError::File)?;
        for (body, durable) in batch.drain(..) {
            // A client that hung up does not matter: its event is on disk and gets published.
            let _ = durable.send(());
            if publisher.send(body).is_err() {
                return Err(LimitError::Stopped("the publisher stopped"));
            }
        }
    }
    Ok(())
}

/// Publishes each body persistent with at most `IN_FLIGHT` confirms outstanding; every publish
/// that is not acked without a return counts in `failures`.
async fn publish(
    channel: Channel,
    route: Route,
    mut bodies: async_mpsc::UnboundedReceiver<Body>,
    failures: Arc<AtomicU64>,
) {
    // mandatory: a message the broker cannot route comes back as a return, not a silent ack.
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            body = bodies.recv(), if open && in_flight.len() < IN_FLIGHT => {
                let Some((id, body)) = body else {
                    open = false;
                    continue;
                };
                let (exchange, routing_key, properties) = route.publish_args(id);
                let publish = channel.basic_publish(
                    exchange.into(),
                    routing_key.as_str().into(),
                    options,
                    &body,
                    properties,
                );
                match timeout(BROKER_TIMEOUT, publish).await {
                    Ok(Ok(confirm)) => in_flight.push(timeout(BROKER_TIMEOUT, confirm)),
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some(confirmed) = in_flight.next(), if !in_flight.is_empty() => {
                if !matches!(confirmed, Ok(Ok(Confirmation::Ack(None)))) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
