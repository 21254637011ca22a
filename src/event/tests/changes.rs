//! A message's changes and the other kinds' words: each edit, deletion, reaction and later ack
//! is an event of its own with its change named; a repeat, however serialised, is the event it
//! repeats; and every body keeps the key the release before changes were named gave it, as its
//! id when it is in the state it was created in, as its earlier id otherwise.

use bytes::Bytes;
use serde_json::Value;

use super::{ev, n8n};
use crate::event::key::Ids;
use crate::event::{parse, stored_change, Change, EventId, Kind, RedactKeys};

macro_rules! fx {
    ($dir:literal, $name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                "../../../tests/fixtures/",
                $dir,
                "/",
                $name,
                ".json"
            ))
            .as_slice(),
        )
    };
}

const FILES: [(&str, &[u8]); 22] = [
    fx!("forks", "saas-pair-list"),
    fx!("forks", "saas-pair-row"),
    fx!("forks", "n8n-action"),
    fx!("forks", "chamado-start"),
    fx!("forks", "baileys-raw"),
    fx!("forks", "wwebjs-raw"),
    fx!("forks", "izing-message"),
    fx!("forks", "izing-ack"),
    fx!("forks", "izing-session"),
    fx!("forks", "whazing-closed"),
    fx!("forks", "whazing-message"),
    fx!("forks", "saas-connection"),
    fx!("forks", "envelope-ticket"),
    fx!("changes", "whazing-message"),
    fx!("changes", "whazing-edited"),
    fx!("changes", "whazing-deleted"),
    fx!("changes", "whazing-reaction"),
    fx!("changes", "envelope-message-created"),
    fx!("changes", "envelope-message-updated"),
    fx!("changes", "envelope-message-deleted"),
    fx!("changes", "izing-message-with-authtoken"),
    fx!("changes", "whazing-ticket-with-apiconfig"),
];

const HAND: [(&str, &str); 14] = [
    (
        "saas-row-deleted",
        r#"{"acao":"from_internal","chamadoId":501,"companyId":1,"fromMe":false,"mensagem":{"id":"3EB0A1B2C3D4E5F60001","body":"bom dia","mediaType":"conversation","mediaUrl":null,"fromMe":false,"ticketId":501,"isDeleted":true},"ticketData":{"id":501,"status":"open","companyId":1,"updatedAt":"2024-05-02T10:03:00.000Z"}}"#,
    ),
    (
        "saas-row-edited",
        r#"{"acao":"from_internal","chamadoId":501,"companyId":1,"fromMe":false,"mensagem":{"wid":"3EB0A1B2C3D4E5F60001","body":"bom dia, tudo bem?","mediaType":"conversation","isEdited":true,"isDeleted":false,"ticketId":501},"ticketData":{"id":501,"status":"open","companyId":1,"updatedAt":"2024-05-02T10:04:00.000Z"}}"#,
    ),
    (
        "wwebjs-ack3",
        r#"{"id":{"fromMe":true,"remote":"5511900001111@c.us","id":"3EB0CAFE00000002","_serialized":"true_5511900001111@c.us_3EB0CAFE00000002"},"body":"seu pedido saiu","type":"chat","timestamp":1714644100,"ack":3}"#,
    ),
    (
        "wwebjs-revoked",
        r#"{"id":{"fromMe":false,"remote":"5511900001111@c.us","id":"3EB0CAFE00000001","_serialized":"false_5511900001111@c.us_3EB0CAFE00000001"},"body":"","type":"revoked","timestamp":1714644000,"ack":1}"#,
    ),
    (
        "wwebjs-edited",
        r#"{"id":{"fromMe":false,"remote":"5511900001111@c.us","id":"3EB0CAFE00000001","_serialized":"false_5511900001111@c.us_3EB0CAFE00000001"},"body":"preciso de ajuda urgente","type":"chat","timestamp":1714644000,"ack":1,"latestEditSenderTimestampMs":1714644060000}"#,
    ),
    (
        "baileys-status",
        r#"{"key":{"remoteJid":"5511900001111@s.whatsapp.net","fromMe":true,"id":"3EB0FEED00000002"},"messageTimestamp":1714644100,"status":4,"message":{"conversation":"seu pedido saiu"}}"#,
    ),
    (
        "baileys-reaction",
        r#"{"key":{"remoteJid":"5511900001111@s.whatsapp.net","fromMe":false,"id":"3EB0FEED00000001"},"messageTimestamp":1714644000,"pushName":"Cliente Teste","message":{"conversation":"oi, tudo bem?"},"reactions":[{"key":{"remoteJid":"5511900001111@s.whatsapp.net","fromMe":true,"id":"3EB0FEED00000009"},"text":"👍"}]}"#,
    ),
    (
        "baileys-revoke",
        r#"{"key":{"remoteJid":"5511900001111@s.whatsapp.net","fromMe":false,"id":"3EB0FEED00000001"},"messageTimestamp":1714644000,"messageStubType":1}"#,
    ),
    (
        "baileys-update",
        r#"{"key":{"remoteJid":"5511900001111@s.whatsapp.net","fromMe":true,"id":"3EB0FEED00000002"},"update":{"status":3}}"#,
    ),
    (
        "izing-ack-failed",
        r#"{"type":"hookMessageStatus","ack":-1,"body":"oi","messageId":"","number":"5511900009999","externalKey":"crm-9","error":"number invalid in whatsapp"}"#,
    ),
    (
        "izing-ack-session",
        r#"{"ack":-2,"messageId":"3EB0BEEF00000003","externalKey":"crm-3","type":"hookMessageStatus"}"#,
    ),
    (
        "envelope-ack",
        r#"{"event":"message.ack","payload":{"id":"3EB0B1C2D3E4F5060708","ack":2,"fromMe":true,"ticketId":88,"companyId":1},"timestamp":"2024-12-07T12:00:05.000Z"}"#,
    ),
    (
        "whazing-read",
        r#"{"messageId":"3EB0A7F00D0000000013","messageBody":"Pedido enviado","timestamp":1733570100,"status":"read","fromMe":true,"mediaType":"chat","mediaUrl":null,"isDeleted":false,"edited":null,"reactions":[],"ticket":{"id":1201,"status":"open"},"whatsapp":{"id":4,"name":"vendas"}}"#,
    ),
    (
        "envelope-session",
        r#"{"event":"session.disconnected","payload":{"id":4,"status":"DISCONNECTED","companyId":1},"timestamp":"2024-12-07T12:10:00.000Z"}"#,
    ),
];

/// What each body is now, and the id the release before changes were named gave it (its
/// branch point's `parse`, run on these very bodies): the stored keys of running installations.
const EXPECTED: [(&str, Kind, Change, &str); 36] = [
    (
        "saas-pair-list",
        Kind::Message,
        Change::Created,
        "98793279630c7680dbc4d3c9eede867f",
    ),
    (
        "saas-pair-row",
        Kind::Message,
        Change::Created,
        "98793279630c7680dbc4d3c9eede867f",
    ),
    (
        "n8n-action",
        Kind::Message,
        Change::Created,
        "d1d255099381e76891c418c7a51f2300",
    ),
    (
        "chamado-start",
        Kind::Message,
        Change::Created,
        "a591349cfca947b16d5bac9a37d30534",
    ),
    (
        "baileys-raw",
        Kind::Message,
        Change::Created,
        "eddde9f620ce3086332f8c3a8781d63a",
    ),
    (
        "wwebjs-raw",
        Kind::Message,
        Change::Created,
        "57e16c1f21b417293d776dfb7feb94c8",
    ),
    (
        "izing-message",
        Kind::Message,
        Change::Created,
        "e4afefbb522d92114647f361e89d2830",
    ),
    (
        "izing-ack",
        Kind::Receipt,
        Change::Read,
        "ea2138d325c5b3188da8b4aa96022b42",
    ),
    (
        "izing-session",
        Kind::Connection,
        Change::Connected,
        "495c16aa3974d8a773966d345ff588a6",
    ),
    (
        "whazing-closed",
        Kind::Status,
        Change::Closed,
        "3461be5100223156910def55fb9f976d",
    ),
    (
        "whazing-message",
        Kind::Message,
        Change::Created,
        "d8e5922ec5c02275f318a0b2bb19e095",
    ),
    (
        "saas-connection",
        Kind::Connection,
        Change::Connected,
        "3e1a901d7d4873ad436d541c2c3557b1",
    ),
    (
        "envelope-ticket",
        Kind::Status,
        Change::Created,
        "8733ef22be11ab320836f4c8b2e8460c",
    ),
    (
        "whazing-message",
        Kind::Message,
        Change::Created,
        "cd9241682283308bf42491ff0504f641",
    ),
    (
        "whazing-edited",
        Kind::Message,
        Change::Edited,
        "cd9241682283308bf42491ff0504f641",
    ),
    (
        "whazing-deleted",
        Kind::Message,
        Change::Deleted,
        "cd9241682283308bf42491ff0504f641",
    ),
    (
        "whazing-reaction",
        Kind::Message,
        Change::Reaction,
        "cd9241682283308bf42491ff0504f641",
    ),
    (
        "envelope-message-created",
        Kind::Message,
        Change::Created,
        "827cddf6d14acfabcc19c636ea182b1b",
    ),
    (
        "envelope-message-updated",
        Kind::Message,
        Change::Edited,
        "68dca5a1b5ae59d9aa1615fd0ac0d151",
    ),
    (
        "envelope-message-deleted",
        Kind::Message,
        Change::Deleted,
        "827cddf6d14acfabcc19c636ea182b1b",
    ),
    (
        "izing-message-with-authtoken",
        Kind::Message,
        Change::Created,
        "9061dbf755e7fbc8dd4aa5179b403d42",
    ),
    (
        "whazing-ticket-with-apiconfig",
        Kind::Status,
        Change::Closed,
        "7a1301fe8c57142256d5ddc47a68493e",
    ),
    (
        "saas-row-deleted",
        Kind::Message,
        Change::Deleted,
        "98793279630c7680dbc4d3c9eede867f",
    ),
    (
        "saas-row-edited",
        Kind::Message,
        Change::Edited,
        "98793279630c7680dbc4d3c9eede867f",
    ),
    (
        "wwebjs-ack3",
        Kind::Message,
        Change::Read,
        "e0f98b249ef678f0293a361aee42a065",
    ),
    (
        "wwebjs-revoked",
        Kind::Message,
        Change::Deleted,
        "57e16c1f21b417293d776dfb7feb94c8",
    ),
    (
        "wwebjs-edited",
        Kind::Message,
        Change::Edited,
        "57e16c1f21b417293d776dfb7feb94c8",
    ),
    (
        "baileys-status",
        Kind::Message,
        Change::Read,
        "9c3586799edfd19d489765de7b55637f",
    ),
    (
        "baileys-reaction",
        Kind::Message,
        Change::Reaction,
        "eddde9f620ce3086332f8c3a8781d63a",
    ),
    (
        "baileys-revoke",
        Kind::Message,
        Change::Deleted,
        "eddde9f620ce3086332f8c3a8781d63a",
    ),
    (
        "baileys-update",
        Kind::Message,
        Change::Delivered,
        "9c3586799edfd19d489765de7b55637f",
    ),
    (
        "izing-ack-failed",
        Kind::Receipt,
        Change::Failed,
        "47c41b482d2fdce71ad192730ac4d9c6",
    ),
    (
        "izing-ack-session",
        Kind::Receipt,
        Change::SessionError,
        "b5c5a98e8cea45a2e67b8b40561bcaf7",
    ),
    (
        "envelope-ack",
        Kind::Receipt,
        Change::Delivered,
        "7daafeb0fab169ef0bcb1d5bd93db668",
    ),
    (
        "whazing-read",
        Kind::Message,
        Change::Read,
        "c892d96c8894ad186130d873adddea3e",
    ),
    (
        "envelope-session",
        Kind::Connection,
        Change::Disconnected,
        "8d26236475379de149577694d5025db0",
    ),
];

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    FILES
        .iter()
        .map(|(name, body)| (*name, body.to_vec()))
        .chain(
            HAND.iter()
                .map(|(name, body)| (*name, body.as_bytes().to_vec())),
        )
        .collect()
}

/// As the pins were made: connection `pin`, no redaction.
fn pinned(body: &[u8]) -> crate::event::Event {
    parse(
        "pin",
        Bytes::copy_from_slice(body),
        &RedactKeys::default(),
        5,
    )
    .expect("parses")
}

#[test]
fn each_body_names_its_change_and_keeps_its_earlier_key() {
    let cases = cases();
    assert_eq!(cases.len(), EXPECTED.len());
    for ((name, body), (pin_name, kind, change, previous)) in cases.iter().zip(EXPECTED) {
        assert_eq!(*name, pin_name);
        let event = pinned(body);
        let meta = &event.meta;
        assert_eq!((meta.kind, meta.change), (kind, Some(change)), "{name}");
        let earlier = event.earlier_id.unwrap_or(meta.id);
        assert_eq!(
            earlier.to_string(),
            previous,
            "{name}: the previous release's key"
        );
        let created = change == Change::Created || kind != Kind::Message;
        // The state a message is created in, and every other kind but the envelope's edit
        // (a receipt before), keeps its id; a change has one of its own.
        let moved = !created || name.starts_with("envelope-message-updated");
        assert_eq!(meta.id.to_string() != previous, moved, "{name}");
        assert_eq!(event.earlier_id.is_some(), moved, "{name}");
        // Read back from the store as a record written before changes were named.
        assert_eq!(stored_change(meta.kind, &event.body), change, "{name}");
        // In an n8n envelope, the same (the inner body's bytes are the body's, trimmed).
        let wrapped = pinned(&n8n(body));
        let alone = pinned(body.trim_ascii());
        assert_eq!(
            (wrapped.meta.id, wrapped.meta.change),
            (alone.meta.id, meta.change),
            "n8n {name}"
        );
        assert_eq!(wrapped.earlier_id, alone.earlier_id, "n8n {name}");
    }
}

fn id_of(body: &[u8]) -> EventId {
    ev(body).meta.id
}

/// The body with its members in another order and other spacing (serde_json's map sorts them).
fn reordered(body: &[u8]) -> Vec<u8> {
    let value: Value = serde_json::from_slice(body).expect("JSON");
    serde_json::to_vec_pretty(&value).expect("serialises")
}

fn replace(body: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(body).expect("UTF-8");
    assert!(text.contains(from), "{from} in {text}");
    text.replacen(from, to, 1).into_bytes()
}

/// Whether `body` is keyed by its bytes: the kinds' identifying fields are missing (a Whazing
/// ticket event has no time, a failed Izing send no message id), so only byte-identical
/// repeats are one event, as they were before.
fn keyed_by_bytes(body: &[u8]) -> bool {
    let meta = ev(body).meta;
    let raw = Bytes::copy_from_slice(body);
    let ids = Ids {
        connection: "suporte-x",
        company: meta.company_id.map(|c| c.to_string()).unwrap_or_default(),
        body: &raw,
    };
    meta.id == ids.body_key()
}

#[derive(Clone, Copy, Debug)]
enum Stamp {
    Text,
    Long,
}

/// Re-encodes every number that reads as a time in seconds (2020 to 2030); whether any was.
fn re_encode(value: &mut Value, encoding: Stamp) -> bool {
    match value {
        Value::Number(n)
            if n.as_i64()
                .is_some_and(|t| (1_577_836_800..1_893_456_000).contains(&t)) =>
        {
            let t = n.as_i64().unwrap_or_default();
            *value = match encoding {
                Stamp::Text => Value::from(t.to_string()),
                Stamp::Long => serde_json::json!({"low": t, "high": 0, "unsigned": true}),
            };
            true
        }
        Value::Object(map) => map
            .values_mut()
            .fold(false, |any, v| re_encode(v, encoding) | any),
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, v| re_encode(v, encoding) | any),
        _ => false,
    }
}

#[test]
fn a_repeat_however_serialised_is_the_event_it_repeats() {
    let mut by_bytes = Vec::new();
    let mut re_encoded = 0;
    for (name, body) in cases() {
        let first = id_of(&body);
        if keyed_by_bytes(&body) {
            by_bytes.push(name);
            continue;
        }
        assert_eq!(id_of(&reordered(&body)), first, "{name} reordered");
        // Every whole-second timestamp re-encoded: as a string, and as protobuf's Long.
        let value: Value = serde_json::from_slice(&body).expect("JSON");
        for encoding in [Stamp::Text, Stamp::Long] {
            let mut again = value.clone();
            if re_encode(&mut again, encoding) {
                re_encoded += 1;
                let again = serde_json::to_vec(&again).expect("serialises");
                assert_eq!(id_of(&again), first, "{name} with {encoding:?} timestamps");
            }
        }
    }
    assert!(
        re_encoded >= 20,
        "{re_encoded} bodies with their timestamps re-encoded"
    );
    // No body that can carry a message's change is among them.
    assert_eq!(
        by_bytes,
        [
            "n8n-action",
            "whazing-closed",
            "saas-connection",
            "whazing-ticket-with-apiconfig",
            "izing-ack-failed"
        ]
    );
}

#[test]
fn what_changes_with_every_post_is_no_change() {
    // The time of the post, a retry counter, the ticket's updatedAt: the same message.
    let whazing = FILES[14].1;
    let first = id_of(whazing);
    let later = replace(
        whazing,
        r#""status": "received""#,
        r#""status": "received", "retry": 3, "postedAt": "2024-12-07T12:09:00Z""#,
    );
    assert_eq!(id_of(&later), first);
    let ticket = replace(
        whazing,
        r#""protocol""#,
        r#""updatedAt": "2024-12-07T12:09:00Z", "protocol""#,
    );
    assert_eq!(id_of(&ticket), first);
    let envelope = FILES[18].1;
    let posted = replace(
        envelope,
        "2024-12-07T12:01:00.000Z",
        "2024-12-07T12:05:00.000Z",
    );
    assert_eq!(id_of(&posted), id_of(envelope));
    // The SaaS row's ack and ticket time are not its state: the pair stays one event.
    let row = FILES[1].1;
    let acked = replace(
        row,
        r#""fromMe": false,
    "ticketId""#,
        r#""fromMe": false, "ack": 3, "ticketId""#,
    );
    assert_eq!(id_of(&acked), id_of(FILES[0].1));
    let moved = replace(row, "2024-05-02T10:01:00.000Z", "2024-05-02T10:09:00.000Z");
    assert_eq!(id_of(&moved), id_of(FILES[0].1));
}

#[test]
fn every_change_is_an_event_of_its_own() {
    let created = id_of(FILES[13].1);
    let mut seen = vec![created];
    for (_, body) in &FILES[14..17] {
        let id = id_of(body);
        assert!(!seen.contains(&id), "{seen:?}");
        seen.push(id);
    }
    // A second edit, a second reaction, a reaction taken by someone else: new again.
    let edited = FILES[14].1;
    for again in [
        replace(edited, "Campinas e Valinhos?", "Campinas e Sumaré?"),
        replace(FILES[16].1, "❤️", "👍"),
        replace(FILES[16].1, r#""contactId": 55"#, r#""contactId": 56"#),
    ] {
        let id = id_of(&again);
        assert!(!seen.contains(&id), "{}", String::from_utf8_lossy(&again));
        seen.push(id);
    }
    // Reactions are a set: listed in another order, the same state.
    let two = replace(
        FILES[16].1,
        r#"{
      "type": "❤️",
      "contactId": 55
    }"#,
        r#"{"type":"❤️","contactId":55},{"type":"👍","userId":3}"#,
    );
    let swapped = replace(
        FILES[16].1,
        r#"{
      "type": "❤️",
      "contactId": 55
    }"#,
        r#"{"userId":3,"type":"👍"},{"contactId":55,"type":"❤️"}"#,
    );
    assert_eq!(id_of(&two), id_of(&swapped));
    // The envelope: created, updated, deleted; two updates with other text are two edits.
    let envelope: Vec<EventId> = FILES[17..20].iter().map(|(_, b)| id_of(b)).collect();
    assert!(envelope[0] != envelope[1] && envelope[1] != envelope[2] && envelope[0] != envelope[2]);
    let second = replace(
        FILES[18].1,
        "prazo de entrega?",
        "prazo de entrega em Campinas?",
    );
    assert_ne!(id_of(&second), envelope[1]);
    // A SaaS row deleted, or edited, is not the pair it was created as.
    let pair = id_of(FILES[0].1);
    assert_eq!(id_of(FILES[1].1), pair);
    assert_ne!(id_of(HAND[0].1.as_bytes()), pair);
    assert_ne!(id_of(HAND[1].1.as_bytes()), pair);
    assert_ne!(id_of(HAND[0].1.as_bytes()), id_of(HAND[1].1.as_bytes()));
}

#[test]
fn a_later_ack_of_a_message_is_a_change_and_an_earlier_one_is_not() {
    let wwebjs = FILES[5].1;
    let created = id_of(wwebjs);
    for (ack, change) in [
        ("0", Change::Created),
        ("2", Change::Delivered),
        ("3", Change::Read),
        ("4", Change::Played),
        ("-1", Change::Failed),
    ] {
        let body = replace(wwebjs, r#""ack": 1"#, &format!(r#""ack": {ack}"#));
        let event = ev(&body);
        assert_eq!(event.meta.change, Some(change), "ack {ack}");
        assert_eq!(
            event.meta.id == created,
            change == Change::Created,
            "ack {ack}"
        );
    }
    // Izing posts a message once, as it arrives: an ack it carries then is no change.
    let izing = replace(
        FILES[6].1,
        r#""fromMe": false,"#,
        r#""fromMe": false, "ack": 3,"#,
    );
    assert_eq!(ev(&izing).meta.change, Some(Change::Created));
    assert_eq!(id_of(&izing), id_of(FILES[6].1));
    // Izing's and Whazing's message status says where a message came from: no change.
    let sent = replace(
        FILES[13].1,
        r#""status": "received""#,
        r#""status": "sended""#,
    );
    assert_eq!(id_of(&sent), id_of(FILES[13].1));
}

#[test]
fn each_kind_names_its_change_from_what_its_sender_says() {
    let word = |body: &str| ev(body.as_bytes()).meta.change;
    for (body, change) in [
        (
            r#"{"Type":"TransferTicket","ticket":{"id":4,"status":"open"},"whatsapp":{"id":2}}"#,
            Change::Transfer,
        ),
        (
            r#"{"Type":"NewTicket","messageBody":"oi","ticket":{"id":4,"status":"pending"}}"#,
            Change::Created,
        ),
        (
            r#"{"event":"ticket.updated","payload":{"id":4,"status":"closed"}}"#,
            Change::Closed,
        ),
        (
            r#"{"event":"ticket.updated","payload":{"id":4}}"#,
            Change::Updated,
        ),
        (
            r#"{"acao":"arquivado","chamadoId":1,"ticketData":{"status":"ARQUIVADO","updatedAt":"t"}}"#,
            Change::Other,
        ),
        (
            r#"{"type":"hookSessionStatus","status":"qrcode","id":2,"timestamp":1}"#,
            Change::Qrcode,
        ),
        (
            r#"{"event":"session.connected","payload":{"id":2}}"#,
            Change::Connected,
        ),
        (
            r#"{"whatsappId":2,"event":"200","status":"OPENING"}"#,
            Change::Opening,
        ),
        (
            r#"{"event":"message.ack","payload":{"id":"3EB0B1C2D3E4F5060708","status":"READ"}}"#,
            Change::Read,
        ),
        (
            r#"{"type":"hookMessageStatus","ack":7,"messageId":"3EB0BEEF00000001"}"#,
            Change::Other,
        ),
        (r#"{"acao":"inventory-sync","items":[1]}"#, Change::Other),
    ] {
        assert_eq!(word(body), Some(change), "{body}");
    }
    assert_eq!(ev(super::MEDIA).meta.change, Some(Change::Created));
    assert_eq!(ev(super::TAG_SYNC).meta.change, Some(Change::Sync));
    assert_eq!(ev(super::OPEN).meta.change, Some(Change::Open));
    assert_eq!(ev(super::CLOSED).meta.change, Some(Change::Closed));
    for body in super::ALL {
        let meta = ev(body).meta;
        let change = meta.change.expect("named");
        assert!(
            Change::of_kind(meta.kind).contains(&change),
            "{change} for {}",
            meta.kind
        );
    }
}
