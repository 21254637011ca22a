//! Other Whaticket-family senders: each fork's shape gets its kind, format and a dedup key that
//! follows the WhatsApp message id (or ticket, session, ack) whatever the values, wrappers,
//! timestamp encodings and member casings around it.

use bytes::Bytes;

use super::{ev, n8n, ok, START};
use crate::event::{
    parse_with, BodyMode, CustomRules, EventId, EventMeta, Format, Kind, RedactKeys, RuleSpec,
};

macro_rules! fork {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/forks/", $name, ".json"))
    };
}

const FORKS: [(&str, &[u8], Kind, Format); 13] = [
    (
        "saas-pair-list",
        fork!("saas-pair-list"),
        Kind::Message,
        Format::WhaticketSaas,
    ),
    (
        "saas-pair-row",
        fork!("saas-pair-row"),
        Kind::Message,
        Format::WhaticketSaas,
    ),
    (
        "n8n-action",
        fork!("n8n-action"),
        Kind::Message,
        Format::WhaticketSaas,
    ),
    (
        "chamado-start",
        fork!("chamado-start"),
        Kind::Message,
        Format::WhaticketSaas,
    ),
    (
        "baileys-raw",
        fork!("baileys-raw"),
        Kind::Message,
        Format::Baileys,
    ),
    (
        "wwebjs-raw",
        fork!("wwebjs-raw"),
        Kind::Message,
        Format::Wwebjs,
    ),
    (
        "izing-message",
        fork!("izing-message"),
        Kind::Message,
        Format::Izing,
    ),
    (
        "izing-ack",
        fork!("izing-ack"),
        Kind::Receipt,
        Format::Izing,
    ),
    (
        "izing-session",
        fork!("izing-session"),
        Kind::Connection,
        Format::Izing,
    ),
    (
        "whazing-closed",
        fork!("whazing-closed"),
        Kind::Status,
        Format::Whazing,
    ),
    (
        "whazing-message",
        fork!("whazing-message"),
        Kind::Message,
        Format::Whazing,
    ),
    (
        "saas-connection",
        fork!("saas-connection"),
        Kind::Connection,
        Format::WhaticketSaas,
    ),
    (
        "envelope-ticket",
        fork!("envelope-ticket"),
        Kind::Status,
        Format::Envelope,
    ),
];

fn id(body: &str) -> EventId {
    ev(body.as_bytes()).meta.id
}

fn kind(body: &str) -> Kind {
    ev(body.as_bytes()).meta.kind
}

fn format(body: &str) -> Option<Format> {
    ev(body.as_bytes()).meta.format
}

#[test]
fn every_fork_fixture_gets_its_kind_and_format_plain_and_n8n_wrapped() {
    for (name, body, kind, format) in FORKS {
        for body in [body.to_vec(), n8n(body)] {
            let meta = ev(&body).meta;
            assert_eq!(meta.kind, kind, "{name}");
            assert_eq!(meta.format, Some(format), "{name}");
        }
    }
}

#[test]
fn other_senders_ids_and_flags_are_found_where_they_put_them() {
    let izing = ev(fork!("izing-message")).meta;
    assert_eq!((izing.ticket_id, izing.from_me), (Some(77), Some(false)));
    let baileys = ev(fork!("baileys-raw")).meta;
    assert_eq!((baileys.company_id, baileys.from_me), (None, Some(false)));
    let wwebjs = ev(br#"{"id":{"fromMe":true,"id":"3EB0CAFE00000001"}}"#).meta;
    assert_eq!(wwebjs.from_me, Some(true));
    let whazing = ev(fork!("whazing-closed")).meta;
    assert_eq!(
        (whazing.ticket_id, whazing.action.as_deref()),
        (Some(42), Some("ClosedTicket"))
    );
    let envelope = ev(fork!("envelope-ticket")).meta;
    assert_eq!(
        (envelope.company_id, envelope.ticket_id),
        (Some(1), Some(42))
    );
    let in_ticket = ev(br#"{"Type":"NewTicket","ticket":{"id":5,"companyId":3}}"#).meta;
    assert_eq!(in_ticket.company_id, Some(3));
}

#[test]
fn the_saas_message_row_with_its_whatsapp_id_in_id_is_the_list_message() {
    let list = ev(fork!("saas-pair-list")).meta;
    let row = ev(fork!("saas-pair-row")).meta;
    assert_eq!(list.id, row.id);
    // A numeric row id is not a WhatsApp id: other rows stay apart.
    let a = id(
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":{"id":98211,"body":"a"}}"#,
    );
    let b = id(
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":{"id":98211,"body":"b"}}"#,
    );
    assert_ne!(a, b);
    let small = id(
        r#"{"acao":"start","mensagem":{"id":"123"},"chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
    );
    let wa = id(r#"{"acao":"start","mensagem":{"wid":"123"}}"#);
    assert_ne!(small, wa);
    // Another value: still paired.
    let row = r#"{"acao":"from_internal","companyId":3,"mensagem":{"id":"BAE5F00D12345678"}}"#;
    let list = r#"{"acao":"queue_webhook","companyId":3,"mensagem":[{"originalData":{"key":{"id":"BAE5F00D12345678"}}}]}"#;
    assert_eq!(id(row), id(list));
}

#[test]
fn one_message_in_any_senders_format_shares_its_key() {
    let wa = "3EB0AB12CD34EF560001";
    let bodies = [
        format!(
            r#"{{"acao":"queue_webhook","mensagem":[{{"originalData":{{"key":{{"id":"{wa}"}}}}}}]}}"#
        ),
        format!(r#"{{"acao":"from_internal","mensagem":{{"wid":"{wa}"}}}}"#),
        format!(
            r#"{{"key":{{"remoteJid":"5511@s.whatsapp.net","fromMe":false,"id":"{wa}"}},"messageTimestamp":1714644000}}"#
        ),
        format!(r#"{{"message":{{"key":{{"id":"{wa}"}},"messageTimestamp":"1714644000"}}}}"#),
        format!(
            r#"{{"id":{{"fromMe":false,"id":"{wa}","_serialized":"false_5511@c.us_{wa}"}},"body":"x"}}"#
        ),
        format!(r#"{{"id":{{"_serialized":"true_5511-99@g.us_{wa}_5522@c.us"}}}}"#),
        format!(r#"{{"message":{{"id":{{"id":"{wa}"}}}}}}"#),
        format!(r#"{{"type":"hookMessage","messageId":"{wa}","message":{{"body":"x"}}}}"#),
        format!(
            r#"{{"messageId":"{wa}","messageBody":"oi","ticket":{{"id":1}},"whatsapp":{{"id":2}}}}"#
        ),
        format!(r#"{{"event":"message.created","payload":{{"id":"{wa}","body":"x"}}}}"#),
        format!(r#"{{"MessageId":"{wa}","Type":"hookmessage"}}"#),
        format!(
            r#"{{"type":"notify","messages":[{{"key":{{"id":"{wa}","fromMe":false}},"message":{{"conversation":"x"}}}},{{"key":{{"id":"OTHER"}}}}]}}"#
        ),
        format!(
            r#"{{"event":"messages.upsert","data":{{"key":{{"remoteJid":"55@s.whatsapp.net","id":"{wa}"}}}}}}"#
        ),
    ];
    let first = id(&bodies[0]);
    assert_eq!(format(&bodies[11]), Some(Format::Baileys));
    assert_eq!(format(&bodies[12]), Some(Format::Baileys));
    for body in &bodies {
        assert_eq!(kind(body), Kind::Message, "{body}");
        assert_eq!(id(body), first, "{body}");
        assert_eq!(ev(&n8n(body.as_bytes())).meta.id, first, "n8n {body}");
    }
    // Another connection or company is another event.
    assert_ne!(ok("other", bodies[2].as_bytes()).meta.id, first);
    let other_company = format!(r#"{{"companyId":9,"key":{{"id":"{wa}"}}}}"#);
    assert_ne!(id(&other_company), first);
    // Another message id is another event.
    assert_ne!(id(&bodies[2].replace("0001", "0002")), first);
}

#[test]
fn a_replay_with_a_re_encoded_timestamp_is_one_event() {
    let stamps = [
        "1714644000",
        r#""1714644000""#,
        r#"{"low":1714644000,"high":0,"unsigned":true}"#,
        r#"{"low":1714644000,"high":0,"unsigned":false}"#,
    ];
    let ids: Vec<EventId> = stamps
        .iter()
        .map(|t| {
            id(&format!(
                r#"{{"key":{{"id":"3EB0FEED00000001"}},"messageTimestamp":{t}}}"#
            ))
        })
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]));
    let sessions: Vec<EventId> = stamps
        .iter()
        .map(|t| {
            id(&format!(
                r#"{{"type":"hookSessionStatus","status":"CONNECTED","id":2,"timestamp":{t}}}"#
            ))
        })
        .collect();
    assert!(sessions.iter().all(|i| *i == sessions[0]), "{sessions:?}");
    let later =
        id(r#"{"type":"hookSessionStatus","status":"CONNECTED","id":2,"timestamp":1714644001}"#);
    assert_ne!(later, sessions[0]);
}

#[test]
fn a_receipt_is_its_message_and_ack() {
    let ack = |n: &str| {
        format!(
            r#"{{"type":"hookMessageStatus","ack":{n},"messageId":"3EB0BEEF00000001","timestamp":{n}}}"#
        )
    };
    assert_eq!(kind(&ack("2")), Kind::Receipt);
    assert_ne!(id(&ack("2")), id(&ack("3")));
    // The same ack again, sent at another time: one event.
    let again = ack("3").replace(r#""timestamp":3"#, r#""timestamp":99"#);
    assert_eq!(id(&again), id(&ack("3")));
    // Not the message's own key.
    let message = r#"{"type":"hookMessage","messageId":"3EB0BEEF00000001","message":{"body":"x"}}"#;
    assert_ne!(id(message), id(&ack("3")));
    // Other spellings of an ack.
    for body in [
        r#"{"TYPE":"HookMessageStatus","ack":3,"messageId":"3EB0BEEF00000001"}"#,
        r#"{"type":"message_ack","ack":3,"id":{"_serialized":"false_55@c.us_3EB0BEEF00000001"}}"#,
        r#"{"event":"message.ack","payload":{"messageId":"3EB0BEEF00000001","ack":3}}"#,
        r#"{"ack":3,"messageId":"3EB0BEEF00000001"}"#,
    ] {
        assert_eq!(kind(body), Kind::Receipt, "{body}");
        assert_eq!(id(body), id(&ack("3")), "{body}");
    }
}

#[test]
fn connection_events_follow_session_state_and_time() {
    let saas =
        r#"{"whatsappId":2,"companyId":1,"event":"200","status":"connected","channel":"whatsapp"}"#;
    assert_eq!(kind(saas), Kind::Connection);
    assert_eq!(format(saas), Some(Format::WhaticketSaas));
    let izing = r#"{"type":"hookSessionStatus","status":"DISCONNECTED","timestamp":5,"id":2}"#;
    assert_ne!(id(izing), id(&izing.replace("DISCONNECTED", "CONNECTED")));
    assert_ne!(id(izing), id(&izing.replace(r#""id":2"#, r#""id":3"#)));
    assert_eq!(
        id(izing),
        id(&izing.replace("DISCONNECTED", "disconnected"))
    );
    let envelope = r#"{"event":"session.updated","payload":{"id":2,"status":"qrcode"},"timestamp":"2024-05-02T10:00:00Z"}"#;
    assert_eq!(kind(envelope), Kind::Connection);
    assert_eq!(format(envelope), Some(Format::Envelope));
}

#[test]
fn ticket_events_of_any_sender_are_status_keyed_by_ticket_event_and_time() {
    let whazing = |t: &str| {
        format!(
            r#"{{"Type":"{t}","ticket":{{"id":42,"status":"open","updatedAt":"2024-05-02T10:00:00Z"}},"whatsapp":{{"id":2}}}}"#
        )
    };
    for t in [
        "NewTicket",
        "TransferTicket",
        "ClosedTicket",
        "closedticket",
    ] {
        assert_eq!(kind(&whazing(t)), Kind::Status, "{t}");
        assert_eq!(format(&whazing(t)), Some(Format::Whazing), "{t}");
        assert_eq!(ev(whazing(t).as_bytes()).meta.ticket_id, Some(42));
    }
    assert_ne!(id(&whazing("NewTicket")), id(&whazing("ClosedTicket")));
    assert_eq!(id(&whazing("NewTicket")), id(&whazing("NewTicket")));
    let envelope = |e: &str, t: &str| {
        format!(r#"{{"event":"{e}","payload":{{"id":42,"companyId":1}},"timestamp":"{t}"}}"#)
    };
    let created = ev(envelope("ticket.created", "a").as_bytes()).meta;
    assert_eq!(
        (created.kind, created.ticket_id, created.company_id),
        (Kind::Status, Some(42), Some(1))
    );
    assert_eq!(created.action.as_deref(), Some("ticket.created"));
    assert_ne!(created.id, id(&envelope("ticket.updated", "a")));
    assert_ne!(created.id, id(&envelope("ticket.created", "b")));
    // `chamado` instead of `ticketData`: its updatedAt keys the event.
    let chamado = |u: &str| format!(r#"{{"acao":"open","chamado":{{"id":42,"updatedAt":"{u}"}}}}"#);
    let open = ev(chamado("a").as_bytes()).meta;
    assert_eq!((open.kind, open.ticket_id), (Kind::Status, Some(42)));
    assert_ne!(open.id, id(&chamado("b")));
    assert_eq!(
        open.id,
        id(&chamado("a").replace(r#""acao""#, r#""x":1,"acao""#))
    );
}

#[test]
fn acao_n8n_is_a_message_and_unknown_shapes_stay_other() {
    assert_eq!(
        kind(r#"{"acao":"N8N","mensagem":"oi","chamadoId":1}"#),
        Kind::Message
    );
    for body in [
        r#"{"type":"somethingElse"}"#,
        r#"{"event":"invoice.paid","payload":{"id":1}}"#,
        r#"{"id":5,"body":"x"}"#,
        r#"{"message":{"text":"x"}}"#,
    ] {
        assert_eq!(kind(body), Kind::Other, "{body}");
    }
    assert_eq!(format(r#"{"x":1}"#), Some(Format::Unknown));
}

#[test]
fn the_whatsapp_web_serialised_form_and_the_bare_id_agree() {
    use crate::event::wamid::normalise;

    assert_eq!(normalise("true_5511900001111@c.us_3EB0ABC"), "3EB0ABC");
    assert_eq!(normalise("false_123-456@g.us_3EB0ABC_5511@c.us"), "3EB0ABC");
    assert_eq!(normalise("3EB0ABC"), "3EB0ABC");
    assert_eq!(normalise("maybe_x_y"), "maybe_x_y");
}

fn rules(specs: &[RuleSpec<'_>]) -> CustomRules {
    match CustomRules::new(specs.iter().copied()) {
        Ok(rules) => rules,
        Err(e) => panic!("{e}"),
    }
}

fn with(rules: &CustomRules, body: &str) -> EventMeta {
    match parse_with(
        "c",
        Bytes::copy_from_slice(body.as_bytes()),
        &RedactKeys::default(),
        rules,
        7,
        None,
        BodyMode::Raw,
    ) {
        Ok(event) => event.meta,
        Err(e) => panic!("{e}"),
    }
}

const RULE: RuleSpec<'static> = RuleSpec {
    pointer: "/evento",
    equals: Some("mensagem_recebida"),
    kind: "message",
    id: Some("/dados/msg~1id"),
    ticket: Some("/dados/atendimento/0"),
    time: Some("/quando"),
};

#[test]
fn a_connection_rule_decides_kind_and_key_in_the_same_pass() {
    let rules = rules(&[
        RULE,
        RuleSpec {
            pointer: "/evento",
            equals: Some("status_atendimento"),
            kind: "status",
            id: None,
            ticket: Some("/dados/atendimento/0"),
            time: Some("/quando"),
        },
    ]);
    let body = r#"{"evento":"MENSAGEM_RECEBIDA","dados":{"msg/id":"3EB0AB12CD34EF560001","atendimento":[42,7]},"quando":1}"#;
    let meta = with(&rules, body);
    assert_eq!((meta.kind, meta.ticket_id), (Kind::Message, Some(42)));
    // The message id is keyed as every built-in sender's: the same message as raw Baileys.
    let baileys = ok("c", br#"{"key":{"id":"3EB0AB12CD34EF560001"}}"#).meta;
    assert_eq!(meta.id, baileys.id);
    // n8n-wrapped: the pointers are into the inner body.
    assert_eq!(
        with(
            &rules,
            std::str::from_utf8(&n8n(body.as_bytes())).unwrap_or_default()
        )
        .id,
        meta.id
    );
    // The second rule: ticket + time.
    let status = |t: &str| {
        with(
            &rules,
            &format!(
                r#"{{"evento":"status_atendimento","dados":{{"atendimento":[42]}},"quando":"{t}"}}"#
            ),
        )
    };
    assert_eq!(status("a").kind, Kind::Status);
    assert_eq!(status("a").id, status("a").id);
    assert_ne!(status("a").id, status("b").id);
    // No rule matches: the built-in rules decide.
    let saas = with(&rules, std::str::from_utf8(START).unwrap_or_default());
    assert_eq!(saas, ok("c", START).meta);
    // A rule without `equals` matches any value but null.
    let any = CustomRules::new([RuleSpec {
        equals: None,
        ..RULE
    }])
    .expect("valid");
    assert_eq!(with(&any, r#"{"evento":5}"#).kind, Kind::Message);
    assert_eq!(with(&any, r#"{"evento":null}"#).kind, Kind::Other);
}

#[test]
fn rule_pointers_follow_rfc_6901() {
    use crate::event::{pointer_tokens, RuleError};
    assert_eq!(pointer_tokens("").unwrap_or_default(), Vec::<String>::new());
    assert_eq!(
        pointer_tokens("/a~1b/~0c/0").unwrap_or_default(),
        ["a/b", "~c", "0"]
    );
    assert_eq!(pointer_tokens("a"), Err(RuleError::PointerStart));
    assert_eq!(pointer_tokens("/a~2"), Err(RuleError::PointerEscape));
    assert!(matches!(
        CustomRules::new([RuleSpec {
            kind: "ticket",
            ..RULE
        }]),
        Err(RuleError::UnknownKind(_))
    ));
    // `01` is not an index; a member named `body` of a plain body is walked like any other.
    let rules = rules(&[RuleSpec {
        pointer: "/body/x/01",
        equals: None,
        kind: "receipt",
        id: None,
        ticket: None,
        time: None,
    }]);
    assert_eq!(with(&rules, r#"{"body":{"x":[1,2]}}"#).kind, Kind::Other);
    let rules = rules_of("/body/x/1");
    assert_eq!(with(&rules, r#"{"body":{"x":[1,2]}}"#).kind, Kind::Receipt);
    assert_eq!(with(&rules, r#"{"body":{"x":[1,null]}}"#).kind, Kind::Other);
}

fn rules_of(pointer: &'static str) -> CustomRules {
    rules(&[RuleSpec {
        pointer,
        equals: None,
        kind: "receipt",
        id: None,
        ticket: None,
        time: None,
    }])
}
