//! The paths the event kinds read, declared as small records the one-pass walker fills, and the
//! matching rules serde_json's `Map` gave them: exact key first, then ASCII case, `null` absent.
//!
//! To read another field, add a line to a record (or a record) here; the walk needs no change.

use std::borrow::Cow;

use super::node::{Node, Scalar, Visit};
use super::offsets::Key;

/// One member name's value in an object. The exact spelling wins (its last duplicate, as a map
/// insert keeps the last); without it, the ASCII-case-insensitive spelling that sorts first, since
/// `serde_json::Map` is a `BTreeMap` in this build (no `preserve_order`). `null` counts as absent.
/// The other spelling is boxed: it is rare, and inline it would double every record's size.
pub(crate) struct Slot<'de, T> {
    exact: Option<T>,
    folded: Option<Box<(Cow<'de, str>, T)>>,
}

impl<T> Default for Slot<'_, T> {
    fn default() -> Self {
        Self {
            exact: None,
            folded: None,
        }
    }
}

/// Whether a recorded value was JSON `null`.
pub(crate) trait Nullable {
    fn is_null(&self) -> bool;
}

impl<'de, T: Default + Nullable> Slot<'de, T> {
    /// The record to walk `key`'s value into, fresh, when it is (so far) the one that counts.
    fn offer(&mut self, name: &str, key: &Key<'de>) -> Option<&mut T> {
        if key.text == name {
            return Some(self.exact.insert(T::default()));
        }
        if !key.text.eq_ignore_ascii_case(name) {
            return None;
        }
        if self.folded.as_ref().is_some_and(|f| key.text > f.0) {
            return None;
        }
        let folded = self
            .folded
            .insert(Box::new((key.text.clone(), T::default())));
        Some(&mut folded.1)
    }

    pub fn get(&self) -> Option<&T> {
        self.exact
            .as_ref()
            .or(self.folded.as_ref().map(|f| &f.1))
            .filter(|t| !t.is_null())
    }
}

/// A value read as a whole: scalars are what the key parts use.
#[derive(Default)]
pub(crate) struct Leaf<'de>(Scalar<'de>);

impl<'de> Node<'de> for Leaf<'de> {
    fn value(&mut self, value: Scalar<'de>) {
        self.0 = value;
    }
}

impl Nullable for Leaf<'_> {
    fn is_null(&self) -> bool {
        self.0 == Scalar::Null
    }
}

impl<'de> Slot<'de, Leaf<'de>> {
    pub fn scalar(&self) -> Option<&Scalar<'de>> {
        self.get().map(|leaf| &leaf.0)
    }
}

/// A member name's length and ASCII-lowercased first byte (0 for the empty name).
const fn sketch(name: &str) -> (usize, u8) {
    let bytes = name.as_bytes();
    let first = if bytes.is_empty() {
        0
    } else {
        bytes[0].to_ascii_lowercase()
    };
    (bytes.len(), first)
}

/// Declares a record of named members: its fields, the member names the body spells them with,
/// and optionally fields of its own that its [`Node`] impl fills.
macro_rules! record {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ident = $key:literal,)* }
        $(extra { $($(#[$extra_doc:meta])* $extra:ident: $extra_ty:ty,)* })?) => {
        $(#[$doc])*
        #[derive(Default)]
        pub(crate) struct $name<'de> {
            shape: Scalar<'de>,
            $(pub $field: Slot<'de, $ty<'de>>,)*
            $($($(#[$extra_doc])* pub $extra: $extra_ty,)*)?
        }

        impl<'de> $name<'de> {
            // A record without members (a list) never offers one.
            #[allow(unused_variables, dead_code)]
            fn offer(&mut self, key: &Key<'de>) -> Visit<'_, 'de> {
                // Both spellings a slot takes have its name's length and first letter (ASCII
                // case aside): one comparison of constants rules out most fields of a big record.
                let seen = sketch(&key.text);
                $(if seen == { const NAME: (usize, u8) = sketch($key); NAME } {
                    if let Some(record) = self.$field.offer($key, key) {
                        return Visit::Into(record);
                    }
                })*
                Visit::Skip
            }

            #[allow(dead_code)]
            pub fn shape(&self) -> &Scalar<'de> {
                &self.shape
            }
        }

        impl Nullable for $name<'_> {
            fn is_null(&self) -> bool {
                self.shape == Scalar::Null
            }
        }
    };
}

/// Declares a [`record!`] that is walked plainly: members only.
macro_rules! plain_record {
    ($(#[$doc:meta])* $name:ident $fields:tt) => {
        record!($(#[$doc])* $name $fields);

        impl<'de> Node<'de> for $name<'de> {
            fn value(&mut self, value: Scalar<'de>) {
                self.shape = value;
            }

            fn member(&mut self, key: &Key<'de>) -> Visit<'_, 'de> {
                self.offer(key)
            }
        }
    };
}

plain_record!(
    /// The event's top-level object (the inner one of an n8n envelope).
    Root {
        acao: Leaf = "acao",
        action: Leaf = "action",
        company_id: Leaf = "companyId",
        chamado_id: Leaf = "chamadoId",
        from_me: Leaf = "fromMe",
        media_name: Leaf = "mediaName",
        ticket_data: TicketData = "ticketData",
        mensagem: Mensagem = "mensagem",
        tags: Tags = "tags",
        // Members other Whaticket-family senders use (Izing, Whazing, Baileys, whatsapp-web.js,
        // the event envelope, the SaaS connection webhook).
        kind: Leaf = "type",
        event: Leaf = "event",
        status: Leaf = "status",
        ack: Leaf = "ack",
        message_id: Leaf = "messageId",
        whatsapp_id: Leaf = "whatsappId",
        ticket_id: Leaf = "ticketId",
        message_body: Leaf = "messageBody",
        timestamp: Stamp = "timestamp",
        key: BaileysKey = "key",
        id: WaId = "id",
        message: Message = "message",
        data: Message = "data",
        messages: MessageList = "messages",
        chamado: TicketData = "chamado",
        ticket: TicketData = "ticket",
        whatsapp: TicketData = "whatsapp",
        payload: Payload = "payload",
    }
);

plain_record!(
    /// A message under `message`: a raw Baileys or whatsapp-web.js message, or Izing's summary.
    Message {
        key: BaileysKey = "key",
        id: WaId = "id",
        from_me: Leaf = "fromMe",
        message_id: Leaf = "messageId",
        ack: Leaf = "ack",
    }
);

record!(
    /// Baileys' `messages.upsert` list: its first message is the event's.
    MessageList {}
    extra {
        first: Message<'de>,
    }
);

impl<'de> Node<'de> for MessageList<'de> {
    fn value(&mut self, value: Scalar<'de>) {
        self.shape = value;
    }

    fn item(&mut self, index: usize) -> Visit<'_, 'de> {
        if index == 0 {
            return Visit::Into(&mut self.first);
        }
        Visit::Skip
    }
}

impl<'de> Root<'de> {
    /// The messages a sender wraps the event's message in: `message` (Baileys, whatsapp-web.js,
    /// Izing), `data` (Baileys-based gateways), the first of `messages` (Baileys upsert).
    pub fn wrapped(&self) -> impl Iterator<Item = &Message<'de>> {
        let first = self
            .messages
            .get()
            .filter(|list| *list.shape() == Scalar::Array)
            .map(|list| &list.first);
        [self.message.get(), self.data.get(), first]
            .into_iter()
            .flatten()
            .filter(|m| *m.shape() == Scalar::Object)
    }
}

plain_record!(
    /// whatsapp-web.js's message id `{fromMe, remote, id, _serialized}`, or a scalar row id
    /// (kept in the shape).
    WaId {
        serialized: Leaf = "_serialized",
        id: Leaf = "id",
        from_me: Leaf = "fromMe",
    }
);

impl<'de> WaId<'de> {
    /// The WhatsApp message id it carries, in whichever form.
    pub fn message_id(&self) -> Option<Cow<'de, str>> {
        self.serialized
            .scalar()
            .and_then(Scalar::text)
            .or_else(|| self.id.scalar().and_then(Scalar::text))
    }
}

plain_record!(
    /// The event envelope's `payload`: a ticket, a message or a session.
    Payload {
        id: Leaf = "id",
        status: Leaf = "status",
        ack: Leaf = "ack",
        company_id: Leaf = "companyId",
        ticket_id: Leaf = "ticketId",
        whatsapp_id: Leaf = "whatsappId",
        message_id: Leaf = "messageId",
        updated_at: Leaf = "updatedAt",
        from_me: Leaf = "fromMe",
        key: BaileysKey = "key",
    }
);

plain_record!(
    /// A time as a number, a numeric or ISO-8601 string, or protobuf's Long `{low, high}`.
    Stamp {
        low: Leaf = "low",
        high: Leaf = "high",
    }
);

impl Stamp<'_> {
    /// One spelling per instant whatever the encoding: integers as decimal digits.
    pub fn text(&self) -> Option<String> {
        match self.shape() {
            Scalar::Object => {
                let low = self.low.scalar()?.as_id()?;
                let high = self.high.scalar().and_then(Scalar::as_id).unwrap_or(0);
                // Long keeps each half as a signed 32-bit value.
                let value = (high << 32) | i64::from(low as u32);
                Some(value.to_string())
            }
            Scalar::Str(s) if s.trim().is_empty() => None,
            scalar => scalar
                .as_id()
                .map(|n| n.to_string())
                .or_else(|| scalar.text().map(|t| t.into_owned())),
        }
    }
}

plain_record!(
    /// The ticket as Whaticket sends it with messages and status changes.
    TicketData {
        status: Leaf = "status",
        company_id: Leaf = "companyId",
        id: Leaf = "id",
        updated_at: Leaf = "updatedAt",
    }
);

plain_record!(
    /// A tag sync: the ticket and its whole tag set.
    Tags {
        ticket_id: Leaf = "ticketId",
        tags: TagList = "tags",
    }
);

plain_record!(TagItem {
    id: Leaf = "id",
    updated_at: Leaf = "updatedAt",
    company_id: Leaf = "companyId",
});

plain_record!(
    /// One message of a Baileys message list.
    MessageItem {
        original_data: OriginalData = "originalData",
    }
);

plain_record!(OriginalData {
    key: BaileysKey = "key",
});

plain_record!(BaileysKey {
    id: Leaf = "id",
    from_me: Leaf = "fromMe",
    remote_jid: Leaf = "remoteJid",
});

record!(
    /// `mensagem`: a saved message row (object), a Baileys list (array), or text. Where it starts
    /// in the body is kept for the content digest of messages without a WhatsApp id.
    Mensagem {
        wid: Leaf = "wid",
        id: Leaf = "id",
        company_id: Leaf = "companyId",
        ticket_id: Leaf = "ticketId",
        from_me: Leaf = "fromMe",
    }
    extra {
        start: Option<usize>,
        /// `originalData.key.id` of the first list item that has one.
        key_id: Option<Cow<'de, str>>,
        /// `originalData.key.fromMe` of the first list item.
        first_from_me: Option<bool>,
        item: MessageItem<'de>,
    }
);

impl<'de> Node<'de> for Mensagem<'de> {
    fn value(&mut self, value: Scalar<'de>) {
        self.shape = value;
    }

    fn member(&mut self, key: &Key<'de>) -> Visit<'_, 'de> {
        self.offer(key)
    }

    fn item(&mut self, _index: usize) -> Visit<'_, 'de> {
        self.item = MessageItem::default();
        Visit::Into(&mut self.item)
    }

    fn item_done(&mut self, index: usize) {
        let key = self.item.original_data.get().and_then(|o| o.key.get());
        if self.key_id.is_none() {
            self.key_id = key.and_then(|k| k.id.scalar()).and_then(Scalar::text);
        }
        if index == 0 {
            self.first_from_me = key
                .and_then(|k| k.from_me.scalar())
                .and_then(Scalar::as_flag);
        }
    }

    fn wants_start(&self) -> bool {
        true
    }

    fn start(&mut self, at: usize) {
        self.start = Some(at);
    }
}

record!(
    /// The tag list of a tag sync, folded item by item into what the key and company need.
    TagList {}
    extra {
        ids: Vec<i64>,
        /// Some tag had no usable id: the tag set cannot be told apart from another.
        missing_id: bool,
        /// The greatest `updatedAt` (ISO-8601 timestamps in one format order as strings).
        latest: Option<Cow<'de, str>>,
        /// `companyId` of the first tag that has one.
        company_id: Option<i64>,
        item: TagItem<'de>,
    }
);

impl<'de> Node<'de> for TagList<'de> {
    fn value(&mut self, value: Scalar<'de>) {
        self.shape = value;
    }

    fn item(&mut self, _index: usize) -> Visit<'_, 'de> {
        self.item = TagItem::default();
        Visit::Into(&mut self.item)
    }

    fn item_done(&mut self, _index: usize) {
        let item = &self.item;
        match item.id.scalar().and_then(Scalar::as_id) {
            Some(id) => self.ids.push(id),
            None => self.missing_id = true,
        }
        if let Some(updated) = item.updated_at.scalar().and_then(Scalar::text) {
            if self.latest.as_ref().is_none_or(|l| updated > *l) {
                self.latest = Some(updated);
            }
        }
        if self.company_id.is_none() {
            self.company_id = item.company_id.scalar().and_then(Scalar::as_id);
        }
    }
}

/// How key parts read a scalar, as they read a `serde_json::Value` before.
impl<'de> Scalar<'de> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Ids arrive as numbers or as numeric strings ("357").
    pub fn as_id(&self) -> Option<i64> {
        match self {
            Scalar::Number(n) => n.as_i64().or_else(|| {
                let f = n.as_f64()?;
                // Range-checked so the cast cannot saturate into a wrong id.
                (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64)
                    .then_some(f as i64)
            }),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_flag(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            Scalar::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Scalar::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// A string or number as text, for key parts that are compared, never interpreted.
    pub fn text(&self) -> Option<Cow<'de, str>> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s.clone()),
            Scalar::Number(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        }
    }
}
