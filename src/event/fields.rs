//! The paths the event kinds read, declared as small records the one-pass walker fills (the
//! matching rules and the macros are in `slot.rs`).
//!
//! To read another field, add a line to a record here, or a new record; the walk needs no change.

use std::borrow::Cow;

use super::node::{Node, Scalar, Visit};
use super::offsets::Key;
use super::reactions::Reactions;
use super::slot::{plain_record, record, sketch, Leaf, Nullable, Slot};

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
        // A message's state, which senders re-post it with when it changes (`state.rs`).
        is_deleted: Leaf = "isDeleted",
        edited: Leaf = "edited",
        reactions: Reactions = "reactions",
        has_reaction: Leaf = "hasReaction",
        media_url: Leaf = "mediaUrl",
        latest_edit: Leaf = "latestEditSenderTimestampMs",
        stub_type: Leaf = "messageStubType",
        update: Update = "update",
        // Seen here inside an n8n envelope only: at the top the envelope takes `body` (n8n.rs).
        body: Leaf = "body",
    }
    facts {
        // The contact: SaaS `sender` (a number, or `{number, name}`) and `name`; a tag sync's,
        // Whazing's `contact`; Baileys' `pushName`; whatsapp-web.js' `fromNumber`/`notifyName`.
        sender: Contact = "sender",
        name: Leaf = "name",
        contact: Contact = "contact",
        push_name: Leaf = "pushName",
        notify_name: Leaf = "notifyName",
        from_number: Leaf = "fromNumber",
        // The ticket's queue: its id, and the SaaS chosen queue's name.
        queue_id: Leaf = "queueId",
        queue_name: Leaf = "filaescolhida",
        // The media: Whazing's and Izing's type; a SaaS media file's parts (`fila-data`).
        media_type: Leaf = "mediaType",
        media_folder: Leaf = "mediaFolder",
        backend_url: Leaf = "backendURL",
        quoted_id: Leaf = "quotedMsgId",
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
        kind: Leaf = "type",
        status: Leaf = "status",
        body: Leaf = "body",
        is_deleted: Leaf = "isDeleted",
        reactions: Reactions = "reactions",
        has_reaction: Leaf = "hasReaction",
        latest_edit: Leaf = "latestEditSenderTimestampMs",
        stub_type: Leaf = "messageStubType",
    }
    facts {
        media_type: Leaf = "mediaType",
        // Baileys' plain text message.
        conversation: Leaf = "conversation",
    }
);

plain_record!(
    /// Baileys' `messages.update` item's `update`: what changed of the message under `key`.
    Update {
        status: Leaf = "status",
        stub_type: Leaf = "messageStubType",
        message: Leaf = "message",
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
        body: Leaf = "body",
        is_deleted: Leaf = "isDeleted",
        media_url: Leaf = "mediaUrl",
    }
    facts {
        contact: Contact = "contact",
        media_type: Leaf = "mediaType",
        quoted_id: Leaf = "quotedMsgId",
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
    facts {
        contact: Contact = "contact",
        queue: Queue = "queue",
        queue_id: Leaf = "queueId",
    }
);

plain_record!(
    /// A contact as senders nest it; a SaaS `sender` number stays in the shape.
    Contact {}
    facts {
        number: Leaf = "number",
        phone_number: Leaf = "phoneNumber",
        name: Leaf = "name",
    }
);

plain_record!(
    /// A ticket's queue.
    Queue {}
    facts {
        id: Leaf = "id",
        name: Leaf = "name",
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
    facts {
        text: Leaf = "text",
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
        // A saved message row's state (`state.rs`).
        is_deleted: Leaf = "isDeleted",
        is_edited: Leaf = "isEdited",
        body: Leaf = "body",
        media_url: Leaf = "mediaUrl",
    }
    facts {
        media_type: Leaf = "mediaType",
        quoted_id: Leaf = "quotedMsgId",
    }
    extra {
        start: Option<usize>,
        /// `originalData.key.id` of the first list item that has one.
        key_id: Option<Cow<'de, str>>,
        /// `originalData.key.fromMe` of the first list item.
        first_from_me: Option<bool>,
        /// The first list item's `text` (recorded with the facts only).
        first_text: Option<Cow<'de, str>>,
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

    fn member_with_facts(&mut self, key: &Key<'de>) -> Visit<'_, 'de> {
        self.offer_with_facts(key)
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
            self.first_text = self.item.text.scalar().and_then(Scalar::text);
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
