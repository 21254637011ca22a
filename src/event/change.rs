//! What happened, in one word per event: the last word of its routing key, its `change` header.
//! Each kind has its own small vocabulary; whatever a sender says that is not in it is `other`,
//! so a routing key always has its four words and a binding such as `status.#.closed` means
//! the same for every fork.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::fields::Root;
use super::format::Format;
use super::node::Scalar;
use super::Kind;

/// The change an event names (see docs/senders.md for which sender value gives which word).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    // A message: new, or re-posted because it changed.
    Created,
    Edited,
    Deleted,
    Reaction,
    // An ack (receipts; and messages re-posted with a later ack).
    Pending,
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
    SessionError,
    // A ticket's lifecycle (`created` and `pending` too).
    Open,
    Closed,
    Transfer,
    Group,
    Lgpd,
    Nps,
    Updated,
    // The WhatsApp session.
    Connected,
    Disconnected,
    Qrcode,
    Opening,
    Pairing,
    Timeout,
    Conflict,
    /// A tag sync: the ticket's whole tag set.
    Sync,
    Other,
}

impl Change {
    pub const ALL: [Change; 27] = [
        Change::Created,
        Change::Edited,
        Change::Deleted,
        Change::Reaction,
        Change::Pending,
        Change::Sent,
        Change::Delivered,
        Change::Read,
        Change::Played,
        Change::Failed,
        Change::SessionError,
        Change::Open,
        Change::Closed,
        Change::Transfer,
        Change::Group,
        Change::Lgpd,
        Change::Nps,
        Change::Updated,
        Change::Connected,
        Change::Disconnected,
        Change::Qrcode,
        Change::Opening,
        Change::Pairing,
        Change::Timeout,
        Change::Conflict,
        Change::Sync,
        Change::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Edited => "edited",
            Change::Deleted => "deleted",
            Change::Reaction => "reaction",
            Change::Pending => "pending",
            Change::Sent => "sent",
            Change::Delivered => "delivered",
            Change::Read => "read",
            Change::Played => "played",
            Change::Failed => "failed",
            Change::SessionError => "session_error",
            Change::Open => "open",
            Change::Closed => "closed",
            Change::Transfer => "transfer",
            Change::Group => "group",
            Change::Lgpd => "lgpd",
            Change::Nps => "nps",
            Change::Updated => "updated",
            Change::Connected => "connected",
            Change::Disconnected => "disconnected",
            Change::Qrcode => "qrcode",
            Change::Opening => "opening",
            Change::Pairing => "pairing",
            Change::Timeout => "timeout",
            Change::Conflict => "conflict",
            Change::Sync => "sync",
            Change::Other => "other",
        }
    }

    pub fn from_name(name: &str) -> Option<Change> {
        Change::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The words a kind's events can carry, for the contract and its tests.
    pub fn of_kind(kind: Kind) -> &'static [Change] {
        use Change::*;
        match kind {
            Kind::Message => &[
                Created,
                Edited,
                Deleted,
                Reaction,
                Delivered,
                Read,
                Played,
                Failed,
                SessionError,
                Other,
            ],
            Kind::Receipt => &[
                Pending,
                Sent,
                Delivered,
                Read,
                Played,
                Failed,
                SessionError,
                Other,
            ],
            Kind::Status => &[
                Created, Open, Pending, Closed, Transfer, Group, Lgpd, Nps, Updated, Other,
            ],
            Kind::Connection => &[
                Connected,
                Disconnected,
                Qrcode,
                Opening,
                Pairing,
                Timeout,
                Conflict,
                Other,
            ],
            Kind::Media => &[Created],
            Kind::Tags => &[Sync],
            Kind::Other => &[Other],
        }
    }

    /// Whether a message re-posted with this ack changed: `pending` and `sent` are where every
    /// message starts.
    pub(crate) fn is_later_ack(self) -> bool {
        matches!(
            self,
            Change::Delivered
                | Change::Read
                | Change::Played
                | Change::Failed
                | Change::SessionError
        )
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The change of an event of `kind`, from the fields the one pass recorded (`word`: the SaaS
/// `acao`/`action`, or another sender's type word; `message`: a message's, named from its state
/// by `state.rs`).
pub(crate) fn name(
    kind: Kind,
    root: &Root<'_>,
    format: Format,
    word: Option<&str>,
    message: Option<Change>,
) -> Change {
    match kind {
        Kind::Message => message.unwrap_or(Change::Created),
        Kind::Receipt => receipt(root, format),
        Kind::Status => ticket(root, format, word),
        Kind::Connection => connection(root),
        Kind::Media => Change::Created,
        Kind::Tags => Change::Sync,
        Kind::Other => Change::Other,
    }
}

/// An ack value: whatsapp-web.js's scale, which Whaticket, Izing and Whazing keep (Izing adds
/// -1 for an invalid number, -2 for a session error), or Baileys' `status` enum when `baileys`
/// (0 error … 5 played); text as the senders spell it. `None` for what is not an ack.
pub(crate) fn ack(value: &Scalar<'_>, baileys: bool) -> Option<Change> {
    if let Some(n) = value.as_id() {
        let word = match (baileys, n) {
            (false, -2) => Change::SessionError,
            (false, -1) | (true, 0) => Change::Failed,
            (false, 0) | (true, 1) => Change::Pending,
            (false, 1) | (true, 2) => Change::Sent,
            (false, 2) | (true, 3) => Change::Delivered,
            (false, 3) | (true, 4) => Change::Read,
            (false, 4) | (true, 5) => Change::Played,
            _ => return None,
        };
        return Some(word);
    }
    let word = match value.as_str()?.trim().to_ascii_lowercase().as_str() {
        "pending" | "clock" => Change::Pending,
        "sent" | "sended" | "server_ack" => Change::Sent,
        "delivered" | "delivery_ack" => Change::Delivered,
        "read" | "read_ack" | "seen" => Change::Read,
        "played" | "played_ack" => Change::Played,
        "error" | "failed" => Change::Failed,
        _ => return None,
    };
    Some(word)
}

/// The ack a receipt carries, from where its key reads it.
fn receipt(root: &Root<'_>, format: Format) -> Change {
    let baileys = format == Format::Baileys;
    let payload = root.payload.get();
    let found = [
        (root.ack.scalar(), false),
        (root.message.get().and_then(|m| m.ack.scalar()), false),
        (payload.and_then(|p| p.ack.scalar()), false),
        (payload.and_then(|p| p.status.scalar()), baileys),
        (root.status.scalar(), baileys),
        (root.update.get().and_then(|u| u.status.scalar()), true),
    ];
    found
        .into_iter()
        .find_map(|(value, baileys)| ack(value?, baileys))
        .unwrap_or(Change::Other)
}

/// A ticket lifecycle word: a status, an action, Whazing's `…Ticket` types, an envelope verb.
fn ticket_word(text: &str) -> Option<Change> {
    let text = text.trim().to_ascii_lowercase();
    if text.starts_with("newticket") {
        return Some(Change::Created);
    }
    let word = text.strip_suffix("ticket").unwrap_or(&text);
    let change = match word {
        "created" | "create" | "new" => Change::Created,
        "open" | "opened" | "reopen" | "reopened" | "accept" | "accepted" => Change::Open,
        "pending" | "waiting" => Change::Pending,
        "closed" | "close" | "finished" | "resolved" => Change::Closed,
        "transfer" | "transferred" => Change::Transfer,
        "group" => Change::Group,
        "lgpd" => Change::Lgpd,
        "nps" => Change::Nps,
        "updated" | "update" | "changed" => Change::Updated,
        _ => return None,
    };
    Some(change)
}

/// The SaaS `acao` (its ticket status otherwise); for other senders their type word (an
/// envelope's `ticket.<verb>`; an update names the status it leads to when it says), then the
/// ticket's status.
fn ticket(root: &Root<'_>, format: Format, word: Option<&str>) -> Change {
    let text = |value: Option<&Scalar<'_>>| value.and_then(Scalar::as_str).and_then(ticket_word);
    let of_ticket = |t: Option<&super::fields::TicketData<'_>>| text(t?.status.scalar());
    let statuses = || {
        of_ticket(root.ticket_data.get())
            .or_else(|| of_ticket(root.ticket.get()))
            .or_else(|| of_ticket(root.chamado.get()))
            .or_else(|| text(root.payload.get()?.status.scalar()))
    };
    if format == Format::WhaticketSaas {
        return word
            .and_then(ticket_word)
            .or_else(|| of_ticket(root.ticket_data.get()))
            .unwrap_or(Change::Other);
    }
    let verb = word.map(|w| w.rsplit_once('.').map_or(w, |(_, verb)| verb));
    match verb.and_then(ticket_word) {
        Some(Change::Updated) => statuses().unwrap_or(Change::Updated),
        Some(change) => change,
        None => statuses().unwrap_or(Change::Other),
    }
}

/// A session state as the senders spell it (Izing and whatsapp-web.js states, Baileys'
/// `connection`, the SaaS connection webhook's `status`).
fn connection_word(text: &str) -> Option<Change> {
    let change = match text.trim().to_ascii_lowercase().as_str() {
        "connected" | "open" | "inchat" | "islogged" | "ready" | "authenticated" | "online" => {
            Change::Connected
        }
        "disconnected" | "close" | "closed" | "logout" | "loggedout" | "browserclose"
        | "unpaired" | "unpaired_idle" | "destroyed" | "offline" => Change::Disconnected,
        "qrcode" | "qr" | "qr_code" | "notlogged" | "qrreaderror" => Change::Qrcode,
        "opening" | "connecting" | "starting" => Change::Opening,
        "pairing" => Change::Pairing,
        "timeout" => Change::Timeout,
        "conflict" => Change::Conflict,
        _ => return None,
    };
    Some(change)
}

/// The state where the connection key reads it, then an envelope's `session.<state>` verb.
fn connection(root: &Root<'_>) -> Change {
    let text =
        |value: Option<&Scalar<'_>>| value.and_then(Scalar::as_str).and_then(connection_word);
    let payload = root.payload.get();
    text(root.status.scalar())
        .or_else(|| text(payload.and_then(|p| p.status.scalar())))
        .or_else(|| {
            let event = root.event.scalar()?.as_str()?;
            connection_word(event.rsplit_once('.').map_or(event, |(_, verb)| verb))
        })
        .unwrap_or(Change::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_has_one_name_and_is_read_back() {
        let mut seen = std::collections::BTreeSet::new();
        for change in Change::ALL {
            assert!(seen.insert(change.as_str()), "{change} twice");
            assert_eq!(Change::from_name(change.as_str()), Some(change));
            let json = serde_json::to_string(&change).unwrap();
            assert_eq!(json, format!("\"{change}\""));
            // A routing key word: no separator or wildcard of a topic exchange.
            assert!(change
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        for kind in Kind::ALL {
            assert!(!Change::of_kind(kind).is_empty(), "{kind}");
        }
    }

    #[test]
    fn acks_on_either_scale_and_in_words() {
        let n = |n: i64| Scalar::Number(n.into());
        let s = |s: &'static str| Scalar::Str(s.into());
        assert_eq!(ack(&n(-2), false), Some(Change::SessionError));
        assert_eq!(ack(&n(-1), false), Some(Change::Failed));
        assert_eq!(ack(&n(3), false), Some(Change::Read));
        assert_eq!(ack(&s("3"), false), Some(Change::Read));
        assert_eq!(ack(&n(3), true), Some(Change::Delivered));
        assert_eq!(ack(&n(0), true), Some(Change::Failed));
        assert_eq!(ack(&n(9), false), None);
        assert_eq!(ack(&s("DELIVERY_ACK"), true), Some(Change::Delivered));
        assert_eq!(ack(&s(" Read "), false), Some(Change::Read));
        // Izing's and Whazing's message status says where a message came from, not an ack.
        assert_eq!(ack(&s("received"), false), None);
        assert_eq!(ack(&Scalar::Bool(true), false), None);
    }

    #[test]
    fn ticket_and_session_words_in_each_spelling() {
        let check = |read: fn(&str) -> Option<Change>, cases: &[(&str, Option<Change>)]| {
            for (text, change) in cases {
                assert_eq!(read(text), *change, "{text}");
            }
        };
        check(
            ticket_word,
            &[
                ("NewTicket", Some(Change::Created)),
                ("NewTicketUserCreate", Some(Change::Created)),
                ("TransferTicket", Some(Change::Transfer)),
                ("ClosedTicket", Some(Change::Closed)),
                ("reopened", Some(Change::Open)),
                ("lgpd", Some(Change::Lgpd)),
                ("arquivado", None),
            ],
        );
        check(
            connection_word,
            &[
                ("CONNECTED", Some(Change::Connected)),
                ("qrcode", Some(Change::Qrcode)),
                ("OPENING", Some(Change::Opening)),
                ("DISCONNECTED", Some(Change::Disconnected)),
                ("close", Some(Change::Disconnected)),
                ("200", None),
            ],
        );
    }
}
