//! The normalised facts of an event, one shape whatever the fork: read from the records the one
//! pass filled (their `facts` members are recorded only for a connection publishing CloudEvents),
//! never from the bytes again. `cloudevents.rs` puts them in the envelope's `data`.

use std::borrow::Cow;

use serde::Serialize;

use super::change::Change;
use super::fields::{Contact as ContactRecord, Root, TicketData};
use super::format::Format;
use super::node::Scalar;
use super::slot::{Leaf, Slot};
use super::state::State;
use super::{wamid, Kind};

/// `data` of a CloudEvents body, less `raw` (the envelope appends it: cloudevents.rs). Every
/// member is always written, `null` when the sender did not say.
#[derive(Debug, Serialize)]
pub(crate) struct Facts<'a> {
    pub kind: Kind,
    pub change: Change,
    pub format: Format,
    pub connection: &'a str,
    pub company: Option<i64>,
    pub ticket: Option<Ticket<'a>>,
    pub contact: Option<Contact<'a>>,
    pub message: Option<Message<'a>>,
    /// A receipt's ack, or the ack a message was re-posted with.
    pub ack: Option<Change>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Ticket<'a> {
    pub id: Option<i64>,
    pub status: Option<Cow<'a, str>>,
    pub queue: Option<Queue<'a>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Queue<'a> {
    pub id: Option<i64>,
    pub name: Option<Cow<'a, str>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Contact<'a> {
    pub number: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Message<'a> {
    /// The WhatsApp message id.
    pub id: Option<Cow<'a, str>>,
    pub text: Option<Cow<'a, str>>,
    pub from_me: Option<bool>,
    pub media: Option<Media<'a>>,
    pub quoted_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Media<'a> {
    #[serde(rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    pub url: Option<Cow<'a, str>>,
}

/// What parse_with knows already, handed over rather than read twice.
pub(crate) struct Known<'a, 'de> {
    pub kind: Kind,
    pub change: Change,
    pub format: Format,
    pub connection: &'a str,
    pub company: Option<i64>,
    pub ticket_id: Option<i64>,
    pub from_me: Option<bool>,
    pub state: Option<&'a State<'de>>,
}

fn leaf<'de>(slot: &Slot<'de, Leaf<'de>>) -> Option<Cow<'de, str>> {
    slot.scalar().and_then(Scalar::text)
}

fn id(slot: &Slot<'_, Leaf<'_>>) -> Option<i64> {
    slot.scalar().and_then(Scalar::as_id)
}

/// A WhatsApp JID's number: `5511…@s.whatsapp.net` → `5511…`.
fn number_of(jid: Cow<'_, str>) -> Cow<'_, str> {
    match jid.split_once('@') {
        Some((number, _)) => Cow::Owned(number.to_owned()),
        None => jid,
    }
}

impl<'de> ContactRecord<'de> {
    fn number(&self) -> Option<Cow<'de, str>> {
        leaf(&self.number)
            .or_else(|| leaf(&self.phone_number))
            // A SaaS `sender` is the number itself.
            .or_else(|| self.shape().text())
    }
}

/// The tickets a sender nests: SaaS `ticketData`, a fork's `chamado`, Whazing's `ticket`.
fn tickets<'r, 'de>(root: &'r Root<'de>) -> impl Iterator<Item = &'r TicketData<'de>> {
    [
        root.ticket_data.get(),
        root.chamado.get(),
        root.ticket.get(),
    ]
    .into_iter()
    .flatten()
}

pub(crate) fn read<'a, 'de: 'a>(root: &'a Root<'de>, known: Known<'a, 'de>) -> Facts<'a> {
    let payload = root.payload.get();
    let contacts = || {
        tickets(root)
            .filter_map(|t| t.contact.get())
            .chain(root.contact.get())
            .chain(payload.and_then(|p| p.contact.get()))
            .chain(root.sender.get())
    };

    let status = tickets(root)
        .find_map(|t| leaf(&t.status))
        .or_else(|| (known.kind == Kind::Status).then(|| leaf(&payload?.status))?);
    let queue_record = tickets(root).find_map(|t| t.queue.get());
    let queue = Queue {
        id: id(&root.queue_id)
            .or_else(|| tickets(root).find_map(|t| id(&t.queue_id)))
            .or_else(|| queue_record.and_then(|q| id(&q.id))),
        name: leaf(&root.queue_name).or_else(|| queue_record.and_then(|q| leaf(&q.name))),
    };
    let queue = (queue.id.is_some() || queue.name.is_some()).then_some(queue);
    let ticket =
        (known.ticket_id.is_some() || status.is_some() || queue.is_some()).then_some(Ticket {
            id: known.ticket_id,
            status,
            queue,
        });

    let jid = root
        .key
        .get()
        .and_then(|k| leaf(&k.remote_jid))
        .or_else(|| root.wrapped().find_map(|m| leaf(&m.key.get()?.remote_jid)));
    let contact = Contact {
        number: contacts()
            .find_map(ContactRecord::number)
            .or_else(|| leaf(&root.from_number))
            .or_else(|| jid.map(number_of)),
        name: contacts()
            .find_map(|c| leaf(&c.name))
            .or_else(|| leaf(&root.name))
            .or_else(|| leaf(&root.push_name))
            .or_else(|| leaf(&root.notify_name)),
    };
    // A session's `name` is the connection's, and an unknown shape's members could be anything.
    let about_a_contact = !matches!(known.kind, Kind::Connection | Kind::Other);
    let contact = (about_a_contact && (contact.number.is_some() || contact.name.is_some()))
        .then_some(contact);

    let message = matches!(known.kind, Kind::Message | Kind::Media | Kind::Receipt)
        .then(|| message(root, &known));
    let ack = match known.kind {
        Kind::Receipt => Some(known.change),
        _ => known.state.and_then(State::ack),
    };
    Facts {
        kind: known.kind,
        change: known.change,
        format: known.format,
        connection: known.connection,
        company: known.company,
        ticket,
        contact,
        message,
        ack,
    }
}

fn message<'a, 'de: 'a>(root: &'a Root<'de>, known: &Known<'a, 'de>) -> Message<'a> {
    let mensagem = root.mensagem.get();
    let row = mensagem.filter(|m| *m.shape() == Scalar::Object);
    let payload = root.payload.get();
    let text = known
        .state
        .and_then(State::text)
        .cloned()
        .or_else(|| match mensagem.map(|m| m.shape()) {
            // The SaaS text form, and its list form's first item.
            Some(Scalar::Str(text)) => Some(text.clone()),
            Some(Scalar::Array) => mensagem.and_then(|m| m.first_text.clone()),
            _ => None,
        })
        .or_else(|| root.wrapped().find_map(|m| leaf(&m.conversation)));
    let media_type = leaf(&root.media_type)
        .or_else(|| row.and_then(|r| leaf(&r.media_type)))
        .or_else(|| payload.and_then(|p| leaf(&p.media_type)))
        .or_else(|| root.wrapped().find_map(|m| leaf(&m.media_type)))
        // whatsapp-web.js' message `type` (`chat`, `image`, `ptt`, …).
        .or_else(|| (known.format == Format::Wwebjs).then(|| leaf(&root.kind))?);
    let media_url = known
        .state
        .and_then(State::media)
        .cloned()
        .or_else(|| leaf(&root.media_url))
        .or_else(|| row.and_then(|r| leaf(&r.media_url)))
        .or_else(|| payload.and_then(|p| leaf(&p.media_url)))
        .or_else(|| saas_file(root));
    let media = (media_type.is_some() || media_url.is_some()).then_some(Media {
        kind: media_type,
        url: media_url,
    });
    Message {
        id: wamid::message_id(root, known.format),
        text,
        from_me: known.from_me,
        media,
        quoted_id: leaf(&root.quoted_id)
            .or_else(|| row.and_then(|r| leaf(&r.quoted_id)))
            .or_else(|| payload.and_then(|p| leaf(&p.quoted_id))),
    }
}

/// A SaaS media file (`fila-data`): `{backendURL}/{mediaFolder}/{mediaName}`.
fn saas_file<'de>(root: &Root<'de>) -> Option<Cow<'de, str>> {
    let name = leaf(&root.media_name)?;
    let mut url = String::new();
    for part in [leaf(&root.backend_url), leaf(&root.media_folder)]
        .into_iter()
        .flatten()
    {
        url.push_str(part.trim_end_matches('/'));
        url.push('/');
    }
    url.push_str(&name);
    Some(Cow::Owned(url))
}
