//! The load's bodies: the fixtures padded to a size, each request unique (event id and ticket).

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Map, Value};
use whaticket_relay::config::Settings;
use whaticket_relay::event;

use crate::{CONNECTION, TICKETS};

const SEQ_MARK: &str = "@@SEQ@@";
const TICKET_MARK: &str = "@@TICKET@@";

const FIXTURES: [(&str, &[u8]); 11] = [
    (
        "media-fila-data",
        include_bytes!("../../tests/fixtures/media-fila-data.json"),
    ),
    (
        "message-from-internal",
        include_bytes!("../../tests/fixtures/message-from-internal.json"),
    ),
    (
        "message-from-me",
        include_bytes!("../../tests/fixtures/message-from-me.json"),
    ),
    (
        "message-group",
        include_bytes!("../../tests/fixtures/message-group.json"),
    ),
    (
        "message-no-caption",
        include_bytes!("../../tests/fixtures/message-no-caption.json"),
    ),
    (
        "message-no-queue",
        include_bytes!("../../tests/fixtures/message-no-queue.json"),
    ),
    (
        "message-queue-webhook",
        include_bytes!("../../tests/fixtures/message-queue-webhook.json"),
    ),
    (
        "message-start",
        include_bytes!("../../tests/fixtures/message-start.json"),
    ),
    (
        "status-closed",
        include_bytes!("../../tests/fixtures/status-closed.json"),
    ),
    (
        "status-open",
        include_bytes!("../../tests/fixtures/status-open.json"),
    ),
    (
        "tag-sync",
        include_bytes!("../../tests/fixtures/tag-sync.json"),
    ),
];

enum Part {
    Lit(Vec<u8>),
    Seq,
    Ticket,
}

/// A fixture turned into literal pieces and the places where the request's sequence number and
/// ticket id go, so making a body is one pass of copies.
struct Template {
    parts: Vec<Part>,
}

pub struct Bodies {
    templates: Vec<Template>,
    pub mean_len: usize,
}

impl Bodies {
    /// Bodies of about `target` bytes; fails unless they parse to distinct event ids.
    pub fn new(target: usize) -> Result<Bodies> {
        let mut templates = Vec::new();
        for (name, raw) in FIXTURES {
            let value: Value =
                serde_json::from_slice(raw).with_context(|| format!("fixture {name}"))?;
            let Value::Object(mut root) = value else {
                bail!("fixture {name} is not an object")
            };
            mark_unique(&mut root);
            pad(&mut root, target).with_context(|| format!("fixture {name}"))?;
            let text = serde_json::to_string_pretty(&root)?;
            templates.push(Template {
                parts: split_marks(&text),
            });
        }
        let mut bodies = Bodies {
            templates,
            mean_len: 0,
        };
        let n = bodies.templates.len() as u64 * 10;
        bodies.mean_len = ((0..n).map(|s| bodies.body(s).len()).sum::<usize>() as u64 / n) as usize;
        bodies.check_unique(bodies.templates.len() as u64 * 20)?;
        Ok(bodies)
    }

    /// Body number `seq`: fixtures in turn, ticket `1000 + seq % TICKETS`.
    pub fn body(&self, seq: u64) -> Vec<u8> {
        let template = &self.templates[(seq % self.templates.len() as u64) as usize];
        fill(template, seq, 1000 + seq % TICKETS, self.mean_len)
    }

    /// Body number `seq` of ticket `ticket`: the fixtures that name a ticket, in turn.
    pub fn ticket_body(&self, seq: u64, ticket: u64) -> Vec<u8> {
        let ticketed: Vec<&Template> = self
            .templates
            .iter()
            .filter(|t| t.parts.iter().any(|p| matches!(p, Part::Ticket)))
            .collect();
        let template = ticketed[(seq % ticketed.len() as u64) as usize];
        fill(template, seq, ticket, self.mean_len)
    }

    /// Fails unless `count` consecutive bodies parse to distinct event ids (nothing deduplicated).
    fn check_unique(&self, count: u64) -> Result<()> {
        let keys = Settings::default().redact.matcher();
        let mut seen = std::collections::HashSet::new();
        for seq in 0..count {
            let ev = event::parse(CONNECTION, bytes::Bytes::from(self.body(seq)), &keys, 0)
                .map_err(|e| anyhow!("generated body {seq} does not parse: {e}"))?;
            ensure!(
                seen.insert(ev.meta.id),
                "generated body {seq} repeats an event id: the load would be deduplicated"
            );
        }
        Ok(())
    }
}

/// A template with `seq` and `ticket` put in.
fn fill(template: &Template, seq: u64, ticket: u64, mean_len: usize) -> Vec<u8> {
    let (seq_text, ticket_text) = (seq.to_string(), ticket.to_string());
    let mut out = Vec::with_capacity(mean_len.max(1024) * 2);
    for part in &template.parts {
        match part {
            Part::Lit(bytes) => out.extend_from_slice(bytes),
            Part::Seq => out.extend_from_slice(seq_text.as_bytes()),
            Part::Ticket => out.extend_from_slice(ticket_text.as_bytes()),
        }
    }
    out
}

fn set_if_present(map: &mut Map<String, Value>, key: &str, value: Value) {
    if let Some(slot) = map.get_mut(key) {
        *slot = value;
    }
}

fn with_seq(value: Option<&Value>) -> Value {
    let base = value.and_then(Value::as_str).unwrap_or("");
    Value::String(format!("{base} #{SEQ_MARK}"))
}

/// Puts the markers where each kind's dedup key and ticket come from (README "Events").
fn mark_unique(root: &mut Map<String, Value>) {
    let ticket = || Value::String(TICKET_MARK.to_owned());
    set_if_present(root, "chamadoId", ticket());
    if let Some(Value::Object(td)) = root.get_mut("ticketData") {
        set_if_present(td, "id", ticket());
        let updated = with_seq(td.get("updatedAt"));
        set_if_present(td, "updatedAt", updated);
    }
    if root.contains_key("mediaName") {
        root.insert("mediaName".into(), Value::String(format!("{SEQ_MARK}.ogg")));
    }
    match root.get_mut("mensagem") {
        Some(Value::String(text)) => text.push_str(&format!(" #{SEQ_MARK}")),
        Some(Value::Object(m)) => {
            set_if_present(m, "wid", Value::String(format!("BENCH{SEQ_MARK}")));
            let body = with_seq(m.get("body"));
            set_if_present(m, "body", body);
            set_if_present(m, "ticketId", ticket());
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                let Value::Object(item) = item else { continue };
                let text = with_seq(item.get("text"));
                set_if_present(item, "text", text);
                if let Some(Value::Object(key)) = item
                    .get_mut("originalData")
                    .and_then(Value::as_object_mut)
                    .and_then(|o| o.get_mut("key"))
                {
                    set_if_present(key, "id", Value::String(format!("BENCH{SEQ_MARK}-{i}")));
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Object(tags)) = root.get_mut("tags") {
        set_if_present(tags, "ticketId", ticket());
        if let Some(Value::Array(list)) = tags.get_mut("tags") {
            for tag in list.iter_mut().filter_map(Value::as_object_mut) {
                let updated = with_seq(tag.get("updatedAt"));
                set_if_present(tag, "updatedAt", updated);
            }
        }
    }
}

fn find_array<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Vec<Value>> {
    match value {
        Value::Object(map) => {
            if matches!(map.get(key), Some(Value::Array(_))) {
                return map.get_mut(key).and_then(Value::as_array_mut);
            }
            map.values_mut().find_map(|v| find_array(v, key))
        }
        Value::Array(items) => items.iter_mut().find_map(|v| find_array(v, key)),
        _ => None,
    }
}

/// Grows the contact's `extraInfo` (Whaticket custom fields) until the body reaches `target` bytes.
fn pad(root: &mut Map<String, Value>, target: usize) -> Result<()> {
    let mut value = Value::Object(std::mem::take(root));
    let mut i = 0;
    while serde_json::to_string_pretty(&value)?.len() < target {
        let extra = find_array(&mut value, "extraInfo").context("no extraInfo to pad")?;
        extra.push(json!({
            "id": 10_000 + i,
            "name": format!("Campo personalizado {i}"),
            "value": format!("Cliente desde 2019, prefere contato à tarde; pedido {i} aguardando retirada na loja centro, \
                              confirmar endereço de entrega e forma de pagamento ({i})"),
            "contactId": 4192,
            "createdAt": "2023-08-30T02:27:15.376Z",
            "updatedAt": "2023-10-12T14:07:44.618Z"
        }));
        i += 1;
    }
    if let Value::Object(map) = value {
        *root = map;
    }
    Ok(())
}

fn split_marks(text: &str) -> Vec<Part> {
    let ticket_quoted = format!("\"{TICKET_MARK}\"");
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let seq_at = rest.find(SEQ_MARK);
        let ticket_at = rest.find(&ticket_quoted);
        let (at, len, part) = match (seq_at, ticket_at) {
            (Some(s), Some(t)) if t < s => (t, ticket_quoted.len(), Part::Ticket),
            (Some(s), _) => (s, SEQ_MARK.len(), Part::Seq),
            (None, Some(t)) => (t, ticket_quoted.len(), Part::Ticket),
            (None, None) => break,
        };
        parts.push(Part::Lit(rest.as_bytes()[..at].to_vec()));
        parts.push(part);
        rest = &rest[at + len..];
    }
    parts.push(Part::Lit(rest.as_bytes().to_vec()));
    parts
}
