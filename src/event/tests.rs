//! The event model's unit tests: classification, ids, n8n, redaction through `parse`, errors.

use bytes::Bytes;
use serde_json::Value;

use super::key::{digest_key, Ids};
use super::*;

mod changes;
mod cloudevents;
mod pinned;
mod redaction;
mod sender_id;
mod senders;

const MEDIA: &[u8] = include_bytes!("../../tests/fixtures/media-fila-data.json");
const FROM_INTERNAL: &[u8] = include_bytes!("../../tests/fixtures/message-from-internal.json");
const FROM_ME: &[u8] = include_bytes!("../../tests/fixtures/message-from-me.json");
const GROUP: &[u8] = include_bytes!("../../tests/fixtures/message-group.json");
const NO_CAPTION: &[u8] = include_bytes!("../../tests/fixtures/message-no-caption.json");
const NO_QUEUE: &[u8] = include_bytes!("../../tests/fixtures/message-no-queue.json");
const QUEUE_WEBHOOK: &[u8] = include_bytes!("../../tests/fixtures/message-queue-webhook.json");
const START: &[u8] = include_bytes!("../../tests/fixtures/message-start.json");
const CLOSED: &[u8] = include_bytes!("../../tests/fixtures/status-closed.json");
const OPEN: &[u8] = include_bytes!("../../tests/fixtures/status-open.json");
const TAG_SYNC: &[u8] = include_bytes!("../../tests/fixtures/tag-sync.json");

/// Every fixture by file name, for the tests that go through them all.
const FIXTURES: [(&str, &[u8]); 11] = [
    ("media-fila-data", MEDIA),
    ("message-from-internal", FROM_INTERNAL),
    ("message-from-me", FROM_ME),
    ("message-group", GROUP),
    ("message-no-caption", NO_CAPTION),
    ("message-no-queue", NO_QUEUE),
    ("message-queue-webhook", QUEUE_WEBHOOK),
    ("message-start", START),
    ("status-closed", CLOSED),
    ("status-open", OPEN),
    ("tag-sync", TAG_SYNC),
];

const ALL: [&[u8]; 11] = [
    MEDIA,
    FROM_INTERNAL,
    FROM_ME,
    GROUP,
    NO_CAPTION,
    NO_QUEUE,
    QUEUE_WEBHOOK,
    START,
    CLOSED,
    OPEN,
    TAG_SYNC,
];

fn no_keys() -> RedactKeys {
    RedactKeys::default()
}

fn ok(connection: &str, body: &[u8]) -> Event {
    match parse(connection, Bytes::copy_from_slice(body), &no_keys(), 7) {
        Ok(event) => event,
        Err(err) => panic!("{err}"),
    }
}

fn ev(body: &[u8]) -> Event {
    ok("suporte-x", body)
}

fn id(body: &str) -> EventId {
    ev(body.as_bytes()).meta.id
}

fn err(body: &[u8]) -> ParseError {
    match parse("c", Bytes::copy_from_slice(body), &no_keys(), 0) {
        Ok(event) => panic!("accepted as {:?}", event.meta.kind),
        Err(err) => err,
    }
}

fn replace(body: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    assert!(text.contains(from), "fixture lacks {from}");
    text.replacen(from, to, 1).into_bytes()
}

/// Body, kind, action, company id, ticket id, from_me.
type Expected = (
    &'static [u8],
    Kind,
    &'static str,
    Option<i64>,
    Option<i64>,
    Option<bool>,
);

#[test]
fn fixtures_are_classified_and_their_ids_extracted() {
    let cases: [Expected; 11] = [
        (
            MEDIA,
            Kind::Media,
            "fila-data",
            Some(1),
            Some(357),
            Some(false),
        ),
        (
            FROM_INTERNAL,
            Kind::Message,
            "from_internal",
            Some(1),
            Some(357),
            Some(false),
        ),
        (
            FROM_ME,
            Kind::Message,
            "start",
            Some(1),
            Some(357),
            Some(true),
        ),
        (
            GROUP,
            Kind::Message,
            "start",
            Some(1),
            Some(402),
            Some(false),
        ),
        (
            NO_CAPTION,
            Kind::Message,
            "start",
            Some(1),
            Some(357),
            Some(false),
        ),
        (
            NO_QUEUE,
            Kind::Message,
            "start",
            Some(1),
            Some(357),
            Some(false),
        ),
        (
            QUEUE_WEBHOOK,
            Kind::Message,
            "queue_webhook",
            Some(1),
            Some(357),
            Some(false),
        ),
        (
            START,
            Kind::Message,
            "start",
            Some(1),
            Some(357),
            Some(false),
        ),
        (CLOSED, Kind::Status, "closed", Some(1), Some(357), None),
        (OPEN, Kind::Status, "open", Some(1), Some(357), None),
        (TAG_SYNC, Kind::Tags, "tag-sync", Some(1), Some(383), None),
    ];
    for (body, kind, action, company, ticket, from_me) in cases {
        let meta = ev(body).meta;
        assert_eq!(meta.kind, kind, "{action}");
        assert_eq!(meta.action.as_deref(), Some(action));
        assert_eq!(meta.company_id, company, "{action}");
        assert_eq!(meta.ticket_id, ticket, "{action}");
        assert_eq!(meta.from_me, from_me, "{action}");
        assert_eq!(meta.connection, "suporte-x");
        assert_eq!(meta.received_at_ms, 7);
    }
}

#[test]
fn unknown_actions_are_other_and_kept_raw() {
    for action in ["queue_webhook_update", "end", "brand-new"] {
        let body = replace(
            START,
            r#""acao": "start""#,
            &format!(r#""acao": "{action}""#),
        );
        let meta = ev(&body).meta;
        assert_eq!(meta.kind, Kind::Other, "{action}");
        assert_eq!(meta.action.as_deref(), Some(action));
        assert_eq!(meta.ticket_id, Some(357));
    }
    let meta = ev(br#"{"hello":"world"}"#).meta;
    assert_eq!((meta.kind, meta.action), (Kind::Other, None));
}

#[test]
fn action_words_are_matched_case_insensitively() {
    assert_eq!(
        ev(&replace(START, r#""start""#, r#""Start""#)).meta.kind,
        Kind::Message
    );
    assert_eq!(
        ev(&replace(
            CLOSED,
            r#""acao": "closed""#,
            r#""acao": "CLOSED""#
        ))
        .meta
        .kind,
        Kind::Status
    );
    assert_eq!(
        ev(&replace(MEDIA, r#""fila-data""#, r#""Fila-Data""#))
            .meta
            .kind,
        Kind::Media
    );
}

#[test]
fn ticket_status_word_is_a_status_even_when_unlisted() {
    let body = br#"{"acao":"arquivado","chamadoId":1,"ticketData":{"status":"arquivado","updatedAt":"t"}}"#;
    assert_eq!(ev(body).meta.kind, Kind::Status);
    let body =
        br#"{"acao":"arquivado","chamadoId":1,"ticketData":{"status":"open","updatedAt":"t"}}"#;
    assert_eq!(ev(body).meta.kind, Kind::Other);
}

#[test]
fn one_whatsapp_message_in_two_formats_has_one_id() {
    let a = ev(FROM_INTERNAL).meta;
    let b = ev(QUEUE_WEBHOOK).meta;
    assert_ne!(a.action, b.action);
    assert_eq!(a.id, b.id);
    let other_wid = replace(
        QUEUE_WEBHOOK,
        "3EB0C431C26A1916E4A5",
        "3EB0C431C26A1916E4A6",
    );
    assert_ne!(ev(&other_wid).meta.id, a.id);
}

#[test]
fn distinct_messages_have_distinct_ids() {
    let ids: Vec<EventId> = [START, FROM_ME, GROUP, NO_CAPTION, NO_QUEUE, FROM_INTERNAL]
        .iter()
        .map(|b| ev(b).meta.id)
        .collect();
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            assert_ne!(a, b);
        }
    }
    let other_text = replace(START, r#""wr43r34""#, r#""wr43r35""#);
    assert_ne!(ev(&other_text).meta.id, ev(START).meta.id);
}

#[test]
fn connections_and_companies_never_share_ids() {
    for body in ALL {
        assert_ne!(ok("a", body).meta.id, ok("b", body).meta.id);
    }
    let mut value: Value = serde_json::from_slice(FROM_INTERNAL).unwrap_or_default();
    value["companyId"] = Value::from(2);
    let other_company = serde_json::to_vec(&value).unwrap_or_default();
    assert_eq!(ev(&other_company).meta.company_id, Some(2));
    assert_ne!(ev(&other_company).meta.id, ev(FROM_INTERNAL).meta.id);
}

#[test]
fn ids_are_pinned() {
    // Changing any key definition changes these; that would re-deliver every stored event.
    assert_eq!(
        ev(START).meta.id.to_string(),
        "e7a3b328ac6393d2257dab7bb579e0dd"
    );
    assert_eq!(
        ev(FROM_INTERNAL).meta.id.to_string(),
        "e0bcecc12b520e69cb775cd402c1444f"
    );
    assert_eq!(
        ev(OPEN).meta.id.to_string(),
        "ac9b43781a5c86c93a465919c4e9292b"
    );
}

#[test]
fn status_ids_follow_action_and_time() {
    let open = ev(OPEN).meta.id;
    assert_ne!(open, ev(CLOSED).meta.id);
    assert_eq!(open, ev(OPEN).meta.id);
    let same_time_closed = replace(OPEN, r#""acao": "open""#, r#""acao": "closed""#);
    assert_ne!(ev(&same_time_closed).meta.id, open);
    // Contact details are not part of a status event's identity.
    let renamed = replace(OPEN, "Rafael Ribeiro", "Rafael R.");
    assert_eq!(ev(&renamed).meta.id, open);
}

#[test]
fn numeric_strings_are_ids() {
    let body =
        br#"{"acao":"open","chamadoId":"357","companyId":" 1","ticketData":{"updatedAt":"t"}}"#;
    let meta = ev(body).meta;
    assert_eq!((meta.company_id, meta.ticket_id), (Some(1), Some(357)));
    let numbers =
        br#"{"acao":"open","chamadoId":357,"companyId":1,"ticketData":{"updatedAt":"t"}}"#;
    assert_eq!(ev(numbers).meta.id, meta.id);
    assert_eq!(ev(br#"{"chamadoId":"abc"}"#).meta.ticket_id, None);
}

#[test]
fn fallbacks_find_company_ticket_and_sender() {
    let body = br#"{"acao":"from_internal","mensagem":{"wid":"W","companyId":"4","ticketId":9,"fromMe":true}}"#;
    let meta = ev(body).meta;
    assert_eq!(
        (meta.company_id, meta.ticket_id, meta.from_me),
        (Some(4), Some(9), Some(true))
    );
    let body = br#"{"acao":"queue_webhook","ticketData":{"id":8,"companyId":3},"mensagem":[{"originalData":{"key":{"fromMe":true,"id":"K"}}}]}"#;
    let meta = ev(body).meta;
    assert_eq!(
        (meta.company_id, meta.ticket_id, meta.from_me),
        (Some(3), Some(8), Some(true))
    );
    let body = br#"{"acao":"start","fromMe":false,"mensagem":{"fromMe":true}}"#;
    assert_eq!(ev(body).meta.from_me, Some(false));
}

#[test]
fn missing_keys_still_produce_ids() {
    let bodies: [&str; 7] = [
        r#"{"acao":"start"}"#,
        r#"{"acao":"start","mensagem":null}"#,
        r#"{"acao":"start","mensagem":[]}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":[]}"#,
        r#"{"acao":"open"}"#,
        r#"{"action":"tag-sync"}"#,
    ];
    let ids: Vec<EventId> = bodies.iter().map(|b| id(b)).collect();
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(ev(br#"{"acao":"start"}"#).meta.company_id, None);
}

#[test]
fn null_mensagem_counts_as_absent() {
    let base = r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"}"#;
    assert_eq!(
        id(&format!("{base}}}")),
        id(&format!(r#"{base},"mensagem":null}}"#))
    );
    assert_ne!(
        id(&format!("{base}}}")),
        id(&format!(r#"{base},"mensagem":""}}"#))
    );
}

#[test]
fn missing_identity_falls_back_to_the_body_digest() {
    let pairs = [
        (
            r#"{"acao":"open","chamadoId":1,"x":1}"#,
            r#"{"acao":"open","chamadoId":1,"x":2}"#,
        ),
        (
            r#"{"acao":"start","mensagem":"oi","x":1}"#,
            r#"{"acao":"start","mensagem":"oi","x":2}"#,
        ),
        (
            r#"{"acao":"fila-data","chamadoId":1,"x":1}"#,
            r#"{"acao":"fila-data","chamadoId":1,"x":2}"#,
        ),
        (
            r#"{"action":"tag-sync","tags":{"tags":[]},"x":1}"#,
            r#"{"action":"tag-sync","tags":{"tags":[]},"x":2}"#,
        ),
        (
            r#"{"action":"tag-sync","tags":{"ticketId":1,"tags":[{"name":"a"}]},"x":1}"#,
            r#"{"action":"tag-sync","tags":{"ticketId":1,"tags":[{"name":"a"}]},"x":2}"#,
        ),
    ];
    for (a, b) in pairs {
        assert_ne!(id(a), id(b), "{a}");
        let ids = Ids {
            connection: "suporte-x",
            company: String::new(),
            body: &Bytes::from(a),
        };
        assert_eq!(id(a), ids.body_key(), "{a}");
    }
}

#[test]
fn message_content_digest_ignores_key_order_only() {
    let base = r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":"#;
    let a = id(&format!(r#"{base}{{"b":1,"a":{{"y":2,"x":3}}}}}}"#));
    let b = id(&format!(r#"{base}{{"a":{{"x":3,"y":2}}, "b":1}}}}"#));
    let c = id(&format!(r#"{base}{{"a":{{"x":3,"y":2}},"b":2}}}}"#));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn media_is_keyed_by_file_name() {
    let a = ev(MEDIA).meta.id;
    let renamed_contact = replace(MEDIA, "Rafael Ribeiro", "R.");
    assert_eq!(ev(&renamed_contact).meta.id, a);
    let other_file = replace(MEDIA, "1697118750977.ogg", "1697118750978.ogg");
    assert_ne!(ev(&other_file).meta.id, a);
}

#[test]
fn tags_are_keyed_by_ticket_tag_set_and_latest_update() {
    let tags = |list: &str| {
        id(&format!(
            r#"{{"action":"tag-sync","tags":{{"ticketId":5,"tags":[{list}]}},"contact":{{"name":"x"}}}}"#
        ))
    };
    let ab = tags(
        r#"{"id":1,"updatedAt":"2023-01-01T00:00:00.000Z"},{"id":"2","updatedAt":"2023-02-01T00:00:00.000Z"}"#,
    );
    let ba = tags(
        r#"{"id":2,"updatedAt":"2023-02-01T00:00:00.000Z"},{"id":1,"updatedAt":"2023-01-01T00:00:00.000Z"}"#,
    );
    let newer = tags(
        r#"{"id":1,"updatedAt":"2023-03-01T00:00:00.000Z"},{"id":2,"updatedAt":"2023-02-01T00:00:00.000Z"}"#,
    );
    let only_a = tags(r#"{"id":1,"updatedAt":"2023-02-01T00:00:00.000Z"}"#);
    assert_eq!(ab, ba);
    assert_ne!(ab, newer);
    assert_ne!(ab, only_a);
    assert_ne!(tags(""), ab);
    let renamed = replace(TAG_SYNC, "Nome do cliente", "Outro");
    assert_eq!(ev(&renamed).meta.id, ev(TAG_SYNC).meta.id);
}

#[test]
fn key_parts_cannot_run_into_each_other() {
    assert_ne!(digest_key(&["ab", "c"]), digest_key(&["a", "bc"]));
    assert_ne!(digest_key(&["a", ""]), digest_key(&["a"]));
}

fn n8n(inner: &[u8]) -> Vec<u8> {
    let mut out =
        br#"{"headers":{"host":"n8n","content-type":"application/json"},"params":{},"query":{},"body": "#.to_vec();
    out.extend_from_slice(inner);
    out.extend_from_slice(
        br#" ,"webhookUrl":"https://n8n.example.com/webhook/x","executionMode":"production"}"#,
    );
    out
}

#[test]
fn n8n_wrapper_is_removed_byte_exact() {
    for body in ALL {
        let plain = ev(body);
        let wrapped = ev(&n8n(body));
        assert_eq!(wrapped.meta, plain.meta);
        assert_eq!(wrapped.body.as_ref(), body);
    }
    let other = br#"{"a":  [1, 2.50, "\u00e9"]}"#;
    assert_eq!(ev(&n8n(other)).body.as_ref(), other);
    assert_eq!(ev(&n8n(other)).meta.id, ev(other).meta.id);
}

#[test]
fn n8n_needs_headers_and_a_marker() {
    let lookalikes: [&[u8]; 3] = [
        br#"{"body":{"acao":"open"},"webhookUrl":"u"}"#,
        br#"{"body":{"acao":"open"},"headers":{}}"#,
        br#"{"body":"{}","headers":{},"executionMode":"x"}"#,
    ];
    for body in lookalikes {
        let event = ev(body);
        assert_eq!(event.body.as_ref(), body);
        assert_eq!(event.meta.kind, Kind::Other);
    }
    let marker_only = br#"{"headers":{},"executionMode":"test","body":{"acao":"open"}}"#;
    assert_eq!(ev(marker_only).body.as_ref(), br#"{"acao":"open"}"#);
}

#[test]
fn n8n_duplicate_body_uses_the_last_like_the_parsed_fields() {
    let body =
        br#"{"body":{"acao":"open"},"headers":{},"webhookUrl":"u","body":{"acao":"fila-data","mediaName":"m"}}"#;
    let event = ev(body);
    assert_eq!(event.meta.kind, Kind::Media);
    assert_eq!(
        event.body.as_ref(),
        br#"{"acao":"fila-data","mediaName":"m"}"#
    );
}

#[test]
fn body_is_redacted_but_id_is_not_affected() {
    let keys = RedactKeys::new(["TOKEN_ORIGIN"]);
    let event = match parse("suporte-x", Bytes::from_static(FROM_INTERNAL), &keys, 0) {
        Ok(event) => event,
        Err(err) => panic!("{err}"),
    };
    let text = String::from_utf8_lossy(&event.body);
    assert!(!text.contains("c0nn3ct10n-t0k3n"));
    assert!(text.contains(r#""token_origin": "[redacted]""#));
    assert_eq!(event.meta.id, ev(FROM_INTERNAL).meta.id);
    let wrapped = match parse("suporte-x", Bytes::from(n8n(FROM_INTERNAL)), &keys, 0) {
        Ok(event) => event,
        Err(err) => panic!("{err}"),
    };
    assert_eq!(wrapped.body, event.body);
}

#[test]
fn body_without_secrets_is_the_received_buffer() {
    let raw = Bytes::from_static(START);
    let event = match parse("c", raw.clone(), &RedactKeys::new(["token_origin"]), 0) {
        Ok(event) => event,
        Err(err) => panic!("{err}"),
    };
    assert_eq!(event.body.as_ptr(), raw.as_ptr());
    assert_eq!(event.body.len(), raw.len());
}

#[test]
fn truncated_json_reports_position_without_content() {
    let body = &START[..START.len() / 2];
    match err(body) {
        ParseError::Syntax {
            message,
            line,
            column,
        } => {
            assert!(message.starts_with("EOF while parsing"), "{message}");
            assert!(line > 10 && column > 0, "{line}:{column}");
        }
        other => panic!("{other:?}"),
    }
    match err(br#"{"segredo": tru}"#) {
        ParseError::Syntax {
            message,
            line,
            column,
        } => {
            assert_eq!((message.as_str(), line, column), ("expected ident", 1, 16));
            assert!(!message.contains("segredo"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_objects_are_rejected() {
    for body in [&b"[1,2]"[..], b"\"acao\"", b"42", b"null", b"true"] {
        assert_eq!(err(body), ParseError::NotAnObject);
    }
}

#[test]
fn invalid_utf8_is_a_syntax_error() {
    let err = err(b"{\"a\":\n \"\xff\"}");
    assert_eq!(
        err,
        ParseError::Syntax {
            message: "invalid UTF-8".into(),
            line: 2,
            column: 3
        }
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(10_000);
    assert!(matches!(err(deep.as_bytes()), ParseError::Syntax { .. }));
    let closed = format!(r#"{{"a":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    match err(closed.as_bytes()) {
        ParseError::Syntax { message, .. } => assert_eq!(message, "recursion limit exceeded"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_and_blank_bodies_are_syntax_errors() {
    for body in [&b""[..], b"   \n"] {
        assert!(
            matches!(err(body), ParseError::Syntax { ref message, .. } if message == "EOF while parsing a value")
        );
    }
    assert!(
        matches!(err(b"{} x"), ParseError::Syntax { ref message, .. } if message == "trailing characters")
    );
}

#[test]
fn event_id_round_trips_through_serde() {
    let meta = ev(START).meta;
    let text = serde_json::to_string(&meta).unwrap_or_default();
    let back: Option<EventMeta> = serde_json::from_str(&text).ok();
    assert_eq!(back, Some(meta.clone()));
    assert_eq!(meta.routing_key(), "message.1.suporte-x.created");
    // The JSON layout of earlier versions has no change: read as unknown, routed as `other`.
    let mut old: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    old.as_object_mut().map(|m| m.remove("change"));
    let old: EventMeta = serde_json::from_value(old).expect("an earlier meta reads");
    assert_eq!(old.change, None);
    assert_eq!(old.routing_key(), "message.1.suporte-x.other");
}

#[test]
fn a_redacted_field_is_still_read_for_the_id() {
    let keys = RedactKeys::new(["acao", "mensagem"]);
    let body =
        br#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":{"b":1}}"#;
    let event = match parse("c", Bytes::from_static(body), &keys, 0) {
        Ok(event) => event,
        Err(err) => panic!("{err}"),
    };
    assert_eq!(event.meta.kind, Kind::Message);
    assert_eq!(event.meta.action.as_deref(), Some("start"));
    assert_eq!(event.meta.id, ok("c", body).meta.id);
    assert_eq!(
        event.body.as_ref(),
        br#"{"acao":"[redacted]","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":"[redacted]"}"#
    );
}

#[test]
fn a_redacted_body_key_hides_the_whole_value_unless_it_is_an_n8n_envelope() {
    let keys = RedactKeys::new(["body", "token"]);
    let run = |body: &'static [u8]| match parse("c", Bytes::from_static(body), &keys, 0) {
        Ok(event) => event,
        Err(err) => panic!("{err}"),
    };
    let plain = run(br#"{"body":{"acao":"open","token":"s"},"token":"t"}"#);
    assert_eq!(plain.meta.kind, Kind::Other);
    assert_eq!(
        plain.body.as_ref(),
        br#"{"body":"[redacted]","token":"[redacted]"}"#
    );
    let wrapped = run(br#"{"headers":{},"body":{"acao":"open","token":"s"},"webhookUrl":"u"}"#);
    assert_eq!(wrapped.meta.kind, Kind::Status);
    assert_eq!(
        wrapped.body.as_ref(),
        br#"{"acao":"open","token":"[redacted]"}"#
    );
}

#[test]
fn an_unwrapped_body_without_secrets_is_a_slice_of_the_received_buffer() {
    let raw = Bytes::from(n8n(OPEN));
    let event = match parse("c", raw.clone(), &RedactKeys::new(["token"]), 0) {
        Ok(event) => event,
        Err(err) => panic!("{err}"),
    };
    let start = event.body.as_ptr() as usize - raw.as_ptr() as usize;
    assert_eq!(&raw[start..start + event.body.len()], OPEN);
}

#[test]
fn nesting_beyond_the_limit_is_refused_inside_values_walked_apart() {
    let keys = RedactKeys::new(["token"]);
    for prefix in [r#"{"token":"#, r#"{"headers":{},"webhookUrl":"u","body":"#] {
        let body = format!("{prefix}{}{}}}", "[".repeat(127), "]".repeat(127));
        match parse("c", Bytes::from(body), &keys, 0) {
            Err(ParseError::Syntax { message, line, .. }) => {
                assert_eq!((message.as_str(), line), ("recursion limit exceeded", 1));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn n8n_inner_body_ends_where_its_bytes_end_whatever_the_spacing() {
    let inner = br#"{"acao":"open", "x" : [1, {"y":"}"}] }"#;
    let layouts: [(&[u8], &[u8]); 4] = [
        (
            br#"{"headers":{},"body" :  "#,
            br#"  ,  "webhookUrl":"u"  }"#,
        ),
        (
            b"{\"headers\":{},\"executionMode\":\"x\",\"body\":\n\t",
            b"\r\n }\n\n",
        ),
        (
            br#"{"headers":{},"webhookUrl":"u","body":"#,
            br#","b\u006fdy2":1}"#,
        ),
        (br#"{"h\u0065aders":{},"webhookUrl":"u","body":"#, b"}"),
    ];
    for (before, after) in layouts {
        let mut raw = before.to_vec();
        raw.extend_from_slice(inner);
        raw.extend_from_slice(after);
        let event = ev(&raw);
        assert_eq!(
            event.body.as_ref(),
            inner,
            "{}",
            String::from_utf8_lossy(&raw)
        );
        assert_eq!(event.meta.kind, Kind::Status);
    }
}

#[test]
fn event_ids_print_as_32_lowercase_hex_digits() {
    let id = EventId([
        0x00, 0x01, 0x0a, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0,
        0xcd,
    ]);
    let expected = "00010aff102030405060708090a0b0cd";
    assert_eq!(id.hex().as_str(), expected);
    assert_eq!(id.to_string(), expected);
    assert_eq!(format!("{id:?}"), format!("EventId({expected})"));
}
