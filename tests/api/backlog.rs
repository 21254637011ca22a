//! Draining a backlog built while the broker was out of reach: each ticket's events in order,
//! and no ticket waiting behind a busy one (fairness, read from the queue's delivery order).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use lapin::message::BasicGetMessage;

use whaticket_relay::config::{AmqpUrl, QueueType};
use whaticket_relay::event::Kind;

use crate::helpers::*;

/// An event of `ticket` numbered `n` in acceptance order, its body padded to about `pad` bytes.
fn ticket_event(n: usize, ticket: u64, pad: usize) -> String {
    let pad = "x".repeat(pad);
    format!(r#"{{"acao":"backlog-test","n":{n},"chamadoId":{ticket},"companyId":1,"pad":"{pad}"}}"#)
}

/// The ticket and number of each message, in the order the queue holds them.
fn delivered(messages: &[BasicGetMessage]) -> Vec<(u64, usize)> {
    messages
        .iter()
        .map(|m| {
            let v = json_of(&m.delivery.data);
            (
                v["chamadoId"].as_u64().unwrap(),
                v["n"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

/// One hot ticket (a busy WhatsApp group) with most of a backlog, many others with a few
/// events each, interleaved, accepted while the broker was out of reach, then drained into a
/// quorum queue. Every ticket's events arrive in acceptance order, and every other ticket's
/// events are in the queue while the hot ticket's backlog is still mostly waiting: they did
/// not wait behind its one-at-a-time confirms.
#[tokio::test]
async fn a_hot_tickets_backlog_holds_up_no_other_ticket() {
    const HOT: u64 = 1;
    const HOT_EVENTS: usize = 300;
    const OTHERS: u64 = 100;
    const EACH: usize = 3;
    let proxy = TcpProxy::start("127.0.0.1:5672".parse::<SocketAddr>().unwrap()).await;
    proxy.cut();
    let mut options = Options::new();
    options.settings.amqp.url = AmqpUrl::new(proxy.url());
    options.settings.amqp.queue_type = QueueType::Quorum;
    // The backlog many times the window, as 12 000 events are for the default 256.
    options.settings.amqp.max_in_flight = 16;
    let app = spawn_app_with(options).await;

    // Per round, for each other ticket: one event of the hot ticket, then one of it; so
    // the others' events lie all along the backlog, the last of them at its very end.
    let plan: Vec<u64> = (0..EACH)
        .flat_map(|_| (0..OTHERS).flat_map(|other| [HOT, 10 + other]))
        .collect();
    assert_eq!(plan.iter().filter(|t| **t == HOT).count(), HOT_EVENTS);
    // The hot ticket's bodies take 2.4 MB: more than the publisher keeps whole in line, so its
    // later events are also read back from the segments when their turn comes.
    for (n, ticket) in plan.iter().enumerate() {
        let pad = if *ticket == HOT { 8 * 1024 } else { 100 };
        let response = app.post_hook(ticket_event(n, *ticket, pad)).await;
        assert_eq!(response.status(), 202, "event {n}");
    }
    assert_eq!(app.store.stats().outbox, plan.len(), "a backlog is built");

    proxy.restore();
    // Connected means the queues are declared.
    app.wait_ready().await;
    // The hot ticket drains one confirm round trip at a time, which a loaded machine's quorum
    // queue stretches to tens of milliseconds: this waits longer than `take_n` (nothing here is
    // timed).
    let messages = app
        .take_n_within(
            &app.queue(Kind::Other),
            plan.len(),
            Duration::from_secs(120),
        )
        .await;
    let order = delivered(&messages);
    app.wait_outbox_empty().await;

    // Each ticket's events in acceptance order, none lost or repeated.
    let mut last: HashMap<u64, usize> = HashMap::new();
    for &(ticket, n) in &order {
        if let Some(before) = last.insert(ticket, n) {
            assert!(
                before < n,
                "ticket {ticket}: event {n} after event {before}"
            );
        }
        assert_eq!(plan[n], ticket, "event {n} is of ticket {}", plan[n]);
    }
    let mut ns: Vec<usize> = order.iter().map(|(_, n)| *n).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..plan.len()).collect::<Vec<_>>(), "every event once");

    // Fairness: where the other tickets' last event stands in the queue, and how many of the
    // hot ticket's events went before it. Held behind the hot ticket, the others would end
    // near the queue's end, after nearly all of its events.
    let last_other = order
        .iter()
        .rposition(|(ticket, _)| *ticket != HOT)
        .expect("other tickets' events");
    let hot_before = order[..last_other]
        .iter()
        .filter(|(ticket, _)| *ticket == HOT)
        .count();
    assert!(
        hot_before < HOT_EVENTS / 4,
        "the other tickets' last event is at position {last_other} of {}, after {hot_before} \
         of the hot ticket's {HOT_EVENTS} events",
        order.len()
    );
}
