//! Today's behaviour, recorded before the one-pass rewrite: the exact meta and relayed bytes of
//! every fixture and of hand-made edge cases. Event ids must never change: running installations
//! hold dedup keys made from them.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::FIXTURES;
use crate::event::{parse, Event, RedactKeys};

/// Hand-made bodies: casing, string and float ids, duplicates, nulls, redaction at depth,
/// n8n envelopes, mensagem of every shape, and bodies the parser must refuse.
const VARIANTS: [&str; 64] = [
    r#"{}"#,
    r#"{"x":1,"y":[1,2,{"z":null}]}"#,
    r#"{"ACAO":"start","ChamadoId":5,"COMPANYID":"2","TicketData":{"UpdatedAt":"t","ID":5},"Mensagem":{"WID":"x"}}"#,
    r#"{"Acao":"open","ACAO":"closed","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
    r#"{"aCAO":"open","Acao":"closed","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
    r#"{"Acao":"closed","acao":"open","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
    r#"{"acao":null,"Acao":"open","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
    r#"{"Acao":null,"ACAO":"open","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
    r#"{"acao":"open","chamadoId":"357","companyId":" 1","ticketData":{"updatedAt":"t"}}"#,
    r#"{"acao":"open","chamadoId":3.0,"companyId":1e2,"ticketData":{"updatedAt":5}}"#,
    r#"{"acao":"open","chamadoId":-0,"companyId":1.5,"ticketData":{"updatedAt":-2.50}}"#,
    r#"{"acao":"open","chamadoId":18446744073709551615,"companyId":9223372036854775807,"ticketData":{"updatedAt":"t"}}"#,
    r#"{"acao":"open","chamadoId":-9223372036854775808,"companyId":"-4","ticketData":{"updatedAt":"t"}}"#,
    r#"{"acao":"open","chamadoId":"x","companyId":true,"ticketData":{"updatedAt":""}}"#,
    r#"{"acao":"open","acao":"closed","chamadoId":1,"chamadoId":2,"ticketData":{"updatedAt":"a"},"ticketData":{"updatedAt":"b"}}"#,
    r#"{"acao":"open","ticketData":{"updatedAt":"a","id":4},"ticketData":null}"#,
    r#"{"acao":"open","ticketData":{"id":4,"updatedAt":"a"},"TicketData":{"id":5,"updatedAt":"b"}}"#,
    r#"{"acao":"start","fromMe":null,"mensagem":{"fromMe":true,"wid":null},"chamadoId":null,"ticketData":{"id":3,"updatedAt":"u"}}"#,
    r#"{"acao":"start","fromMe":"TRUE","mensagem":{"fromMe":false},"ticketData":{"id":3,"updatedAt":"u"}}"#,
    r#"{"acao":"start","fromMe":1,"mensagem":{"FromMe":"false","wid":""},"ticketData":{"id":3,"updatedAt":"u"}}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":[{"originalData":{"key":{"id":"K","fromMe":"TRUE"}}}]}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":[{"x":1},{"originalData":{"key":{"id":7,"fromMe":true}}},{"originalData":{"key":{"id":"L"}}}]}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":[{"OriginalData":{"KEY":{"ID":"K"}},"originalData":{"key":{"fromMe":true}}}]}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":["a",{"b":1},null,[2]]}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":"texto \u00e9 \n"}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":{"b":2,"a":{"y":[1.10,-0,1e5],"x":"\u0041"},"a":{"z":1}}}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":12.50}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":[]}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":true}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"Mensagem":{"a":1},"MENSAGEM":{"a":2}}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"m\u0065nsagem":{"a":1, "b" : [ 1 ,2 ] }}"#,
    r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem" :	{"token":"s","b":1}}"#,
    r#"{"acao":"queue_webhook","mensagem":{"wid":"W","companyId":"4","ticketId":9}}"#,
    r#"{"acao":"queue_webhook","mensagem":{"wid":12,"companyId":4.0,"ticketId":"9"},"companyId":null}"#,
    r#"{"acao":"st\u0061rt","mensagem":{"wid":"W\"x"}}"#,
    r#"{"acao":"fila-data","mediaName":"1697118750977.ogg","chamadoId":2}"#,
    r#"{"acao":"fila-data","mediaName":1697118750977,"Companyid":3}"#,
    r#"{"acao":"fila-data","mediaName":""}"#,
    r#"{"acao":"arquivado","chamadoId":1,"ticketData":{"status":"ARQUIVADO","updatedAt":"t"}}"#,
    r#"{"acao":"open","action":"tag-sync","tags":{"ticketId":5,"tags":[{"id":1}]}}"#,
    r#"{"action":"tag-sync","tags":{"ticketId":5,"tags":[{"id":2,"updatedAt":"b","companyId":"7"},{"id":"1","updatedAt":"c"},{"id":2}]}}"#,
    r#"{"action":"Tag-Sync","Tags":{"TicketId":"5","Tags":[{"ID":1,"UpdatedAt":"a"},{"id":1,"ID":3}]}}"#,
    r#"{"action":"tag-sync","tags":{"ticketId":5,"tags":[{"id":1},{"name":"x"}]}}"#,
    r#"{"action":"tag-sync","tags":{"ticketId":5,"tags":[{"id":1},"x"]}}"#,
    r#"{"action":"tag-sync","tags":{"ticketId":5,"tags":{"id":1}}}"#,
    r#"{"action":"tag-sync","tags":{"tags":[{"id":1,"companyId":null},{"id":2,"companyId":8}]}}"#,
    r#"{"a":[{"b":{"token":{"x":[1,2]}}}],"Password":"p","acao":"open","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
    r#"{"tok\u0065n":"x","list":[{"TOKEN_ORIGIN":[{"token":1}]}],"token":null}"#,
    r#"{"token":"a","token":"b","passwordHash":{"deep":{"token":"c"}}}"#,
    r#"{"headers":{"host":"n8n"},"params":{},"body":{"acao":"open","token":"s","chamadoId":1,"ticketData":{"updatedAt":"t"}},"webhookUrl":"u"}"#,
    r#"{"body":{"acao":"open","chamadoId":1},"headers":{},"executionMode":"test","token":"outer"}"#,
    r#"{"body":{"acao":"open"},"headers":{},"webhookUrl":"u","body":{"acao":"fila-data","mediaName":"m"}}"#,
    r#"{"body":{"acao":"fila-data","mediaName":"m"},"headers":{},"webhookUrl":"u","body":"not an object"}"#,
    r#"{"headers":{},"webhookUrl":"u","b\u006fdy":{"acao":"open","chamadoId":1,"ticketData":{"updatedAt":"t"}}}"#,
    r#"{"headers":{},"webhookUrl":"u","body":{"acao":"open"},"\u0062ody2":1}"#,
    r#"{"Headers":{},"webhookUrl":"u","body":{"acao":"open"}}"#,
    r#"{"headers":null,"executionMode":null,"body":{"acao":"start","mensagem":"oi","chamadoId":1,"ticketData":{"updatedAt":"t"}}}"#,
    r#"{"headers":{},"webhookUrl":"u","body":{"headers":{},"webhookUrl":"v","body":{"acao":"open"}}}"#,
    r#"{"body":{"token":"inner"},"token":"outer","list":[{"body":{"token":"x"}}]}"#,
    "{\"token\":\"\\ud800\"}",
    "{\"token\":1e400,\"acao\":\"open\"}",
    "{\"a\":1,\n \"token\": [\"\\uDC00\"]}",
    "{\"b\":{\"c\":\"\\ud83d\"}}",
    "[1,2]",
];

fn keys() -> RedactKeys {
    RedactKeys::new([
        "token_origin",
        "token",
        "password",
        "passwordHash",
        "accessToken",
    ])
}

fn describe(raw: &[u8]) -> String {
    match parse("pin", Bytes::copy_from_slice(raw), &keys(), 5) {
        Ok(Event { meta, body, .. }) => {
            let digest = hex::encode(&Sha256::digest(&body)[..8]);
            format!(
                "{} {} {:?} {:?} {:?} {:?} {} {}",
                meta.id,
                meta.kind,
                meta.action,
                meta.company_id,
                meta.ticket_id,
                meta.from_me,
                body.len(),
                digest
            )
        }
        Err(err) => format!("error: {err}"),
    }
}

fn n8n(inner: &[u8]) -> Vec<u8> {
    let mut out = br#"{"headers":{"host":"n8n"},"body":"#.to_vec();
    out.extend_from_slice(inner);
    out.extend_from_slice(br#","executionMode":"production"}"#);
    out
}

fn deep(prefix: &str, levels: usize) -> String {
    format!("{prefix}{}{}}}", "[".repeat(levels), "]".repeat(levels))
}

fn cases() -> Vec<(String, Vec<u8>)> {
    let mut cases = Vec::new();
    for (name, body) in FIXTURES {
        cases.push((name.to_owned(), body.to_vec()));
        cases.push((format!("n8n {name}"), n8n(body)));
    }
    for (i, body) in VARIANTS.iter().enumerate() {
        cases.push((format!("variant {i}"), body.as_bytes().to_vec()));
    }
    for (i, levels) in [125, 126, 127].into_iter().enumerate() {
        cases.push((format!("deep {i}"), deep(r#"{"a":"#, levels).into_bytes()));
        cases.push((
            format!("deep token {i}"),
            deep(r#"{"token":"#, levels).into_bytes(),
        ));
        let body = deep(r#"{"body":{"x":"#, levels - 1);
        let body = format!(r#"{body},"headers":{{}},"webhookUrl":"u"}}"#);
        cases.push((format!("deep n8n {i}"), body.into_bytes()));
    }
    cases
}

const EXPECTED: &[&str] = &[
    "media-fila-data: 75bc1b6b4b6f3e40b9d1da83224e94ef media Some(\"fila-data\") Some(1) Some(357) Some(false) 1871 733e56b86915cecb",
    "n8n media-fila-data: 75bc1b6b4b6f3e40b9d1da83224e94ef media Some(\"fila-data\") Some(1) Some(357) Some(false) 1871 733e56b86915cecb",
    "message-from-internal: 9e19ca8c9221a54e7d54c54cbfd8bfb9 message Some(\"from_internal\") Some(1) Some(357) Some(false) 2292 e3fa99db13e14db2",
    "n8n message-from-internal: 9e19ca8c9221a54e7d54c54cbfd8bfb9 message Some(\"from_internal\") Some(1) Some(357) Some(false) 2292 e3fa99db13e14db2",
    "message-from-me: 00f478291d16a0e07c4245d377386249 message Some(\"start\") Some(1) Some(357) Some(true) 1906 a1b9482691ca3b7c",
    "n8n message-from-me: 00f478291d16a0e07c4245d377386249 message Some(\"start\") Some(1) Some(357) Some(true) 1906 a1b9482691ca3b7c",
    "message-group: df3c60bf3c0c519da52b71d5085e3f64 message Some(\"start\") Some(1) Some(402) Some(false) 1852 d279ef3ea00e9830",
    "n8n message-group: df3c60bf3c0c519da52b71d5085e3f64 message Some(\"start\") Some(1) Some(402) Some(false) 1852 d279ef3ea00e9830",
    "message-no-caption: 124862604ef3cfe9b27921028cbe8e01 message Some(\"start\") Some(1) Some(357) Some(false) 1775 8550bc4c044f2979",
    "n8n message-no-caption: 124862604ef3cfe9b27921028cbe8e01 message Some(\"start\") Some(1) Some(357) Some(false) 1775 8550bc4c044f2979",
    "message-no-queue: 86b5ff71ce3dc961a494ba794a67d88f message Some(\"start\") Some(1) Some(357) Some(false) 1696 28f369342569d212",
    "n8n message-no-queue: 86b5ff71ce3dc961a494ba794a67d88f message Some(\"start\") Some(1) Some(357) Some(false) 1696 28f369342569d212",
    "message-queue-webhook: 9e19ca8c9221a54e7d54c54cbfd8bfb9 message Some(\"queue_webhook\") Some(1) Some(357) Some(false) 2178 e8023151590651d7",
    "n8n message-queue-webhook: 9e19ca8c9221a54e7d54c54cbfd8bfb9 message Some(\"queue_webhook\") Some(1) Some(357) Some(false) 2178 e8023151590651d7",
    "message-start: 63905cda5c449699a087dda3ae7051c8 message Some(\"start\") Some(1) Some(357) Some(false) 1836 8a32abc4ff92e67a",
    "n8n message-start: 63905cda5c449699a087dda3ae7051c8 message Some(\"start\") Some(1) Some(357) Some(false) 1836 8a32abc4ff92e67a",
    "status-closed: 9cf1da9dfa417207f70f657af1a01ea1 status Some(\"closed\") Some(1) Some(357) None 1671 69e7da5c82e1fe19",
    "n8n status-closed: 9cf1da9dfa417207f70f657af1a01ea1 status Some(\"closed\") Some(1) Some(357) None 1671 69e7da5c82e1fe19",
    "status-open: 57d69f458232453cd71d600e749b6a9e status Some(\"open\") Some(1) Some(357) None 1670 66533298adb426bd",
    "n8n status-open: 57d69f458232453cd71d600e749b6a9e status Some(\"open\") Some(1) Some(357) None 1670 66533298adb426bd",
    "tag-sync: 4e70afd91a25ed5700b41db0c61d6fa4 tags Some(\"tag-sync\") Some(1) Some(383) None 611 205f617855f2720a",
    "n8n tag-sync: 4e70afd91a25ed5700b41db0c61d6fa4 tags Some(\"tag-sync\") Some(1) Some(383) None 611 205f617855f2720a",
    "variant 0: f5bd0599f1f070add29ea4c40a18cbf8 other None None None None 2 44136fa355b3678a",
    "variant 1: 54cb0dd7addec743fbcf52f2b0264022 other None None None None 28 d5b4f6e92051acce",
    "variant 2: 1d871981b68f1a66c2ba1d627fc4d894 message Some(\"start\") Some(2) Some(5) None 107 b7ed20e60b3b277f",
    "variant 3: e153c01556dce2d955534befa49e59ef status Some(\"closed\") None Some(1) None 76 7891bc52aa85e607",
    "variant 4: e153c01556dce2d955534befa49e59ef status Some(\"closed\") None Some(1) None 76 72f7892c29f339ff",
    "variant 5: 224f24579ab0f5833e3865f380ea219d status Some(\"open\") None Some(1) None 76 51d2393ac5e2b8f7",
    "variant 6: 7fe626923c382c8f3be44866ed83dd52 other None None Some(1) None 72 21dc90937ade2792",
    "variant 7: 224f24579ab0f5833e3865f380ea219d status Some(\"open\") None Some(1) None 72 0f7552e5b2226fbb",
    "variant 8: e3e8832ac445d3d121f275ecb6dd56ee status Some(\"open\") Some(1) Some(357) None 81 63fb9770684e2274",
    "variant 9: 5b1325fc8992a2f303cbf837e316912a status Some(\"open\") Some(100) Some(3) None 76 77dbea3e6d544083",
    "variant 10: f29dfaa51ad51bbcb3d003c44cd4f3db status Some(\"open\") None Some(0) None 79 9a685518b7c08446",
    "variant 11: 78adcd631cea59e5c649f21389f5e127 status Some(\"open\") Some(9223372036854775807) None None 111 c20f8a207b94ce59",
    "variant 12: 8fc95c473bcb90ae9da97cfd38c3ade6 status Some(\"open\") Some(-4) Some(-9223372036854775808) None 96 6edf90b5f6cb0508",
    "variant 13: c2750b8b96a893ae81de83e234d50587 status Some(\"open\") None None None 78 03d62f4d2d1aac61",
    "variant 14: 2ea55cc550491f644e7f9cea32d3f6b8 status Some(\"closed\") None Some(2) None 121 19eefe3e3a002bb9",
    "variant 15: d40b86a9365dcf984e8f028bc637d0a9 status Some(\"open\") None None None 71 0159f9efe5d8d5ec",
    "variant 16: 419560df09a9c85696ae79dedae53885 status Some(\"open\") None Some(4) None 91 3436421187d3764f",
    "variant 17: d381b52c47d42b71b2508c80ef93790e message Some(\"start\") None Some(3) Some(true) 123 01a646a645385290",
    "variant 18: f8a0a7771de385d5baab6ecb9ccdef36 message Some(\"start\") None Some(3) Some(true) 98 950345a28bdd2b3f",
    "variant 19: 6c8161d545dbb560ea17539f61eeb993 message Some(\"start\") None Some(3) Some(false) 104 1f07632be71e61f6",
    "variant 20: a597d596d83b44f7868b17f1a84169c0 message Some(\"start\") None Some(1) Some(true) 126 ce38dce08b8efbe6",
    "variant 21: 0190a5f87dae8630262bbf3a1c4eb5cf message Some(\"start\") None Some(1) None 166 0330f89eab837f5e",
    "variant 22: 301d5ef0c7e69316b59da368a5b38d6c message Some(\"start\") None Some(1) Some(true) 149 eebbd8ceb8b796e2",
    "variant 23: 02c6f8c460639059b16ae2eed8d8a5ee message Some(\"start\") None Some(1) None 95 b5ea343b08e011df",
    "variant 24: 0e1bf874db958eb20441b389f58c836e message Some(\"start\") None Some(1) None 90 564527b2039cdae4",
    "variant 25: a6065897ac92cbca9dc5aa5a60832132 message Some(\"start\") None Some(1) None 129 2070ee8db98405f8",
    "variant 26: 33710988ea7233caf668e7324b5971d3 message Some(\"start\") None Some(1) None 78 86ca1a66c8c30a39",
    "variant 27: 7c1a4b6f2748d2b6d6318283dedcab36 message Some(\"start\") None Some(1) None 75 09693d1e587dd7fa",
    "variant 28: 7326dd979762a654b55ca30ba58fe836 message Some(\"start\") None Some(1) None 77 3c47487ea40073aa",
    "variant 29: 011fa990fce421ed2e236bb2001e69ca message Some(\"start\") None Some(1) None 99 4841d9aa4f2867c3",
    "variant 30: 1541a69afe47669f3487729f2f019dfc message Some(\"start\") None Some(1) None 102 47be307ef199c7cb",
    "variant 31: 2c06e1b96be7295a3d85ccf49289a55c message Some(\"start\") None Some(1) None 103 8f9c56a6300bb731",
    "variant 32: 826568f1ddb844f01fe6a9c2bc3b3d26 message Some(\"queue_webhook\") Some(4) Some(9) None 76 7eff333db5c1c182",
    "variant 33: 70cb9ef8f1151d5eafaf422d899e4fa3 message Some(\"queue_webhook\") Some(4) Some(9) None 94 e3790ea8a4d062ac",
    "variant 34: dbc261ac75d77d3dc7101c8a9d0c772b message Some(\"start\") None None None 47 43d3c96352c5e86d",
    "variant 35: 7800f87a3f2fc7f4646e6c04f2bed17b media Some(\"fila-data\") None Some(2) None 66 e8b811c737ab6f5f",
    "variant 36: 6f609ec6e9b30e422458bc44fee0e467 media Some(\"fila-data\") Some(3) None None 60 9a96351bf4d3a690",
    "variant 37: 045295bfc6144d018a14efab9feb4c4a media Some(\"fila-data\") None None None 35 df5088a96013c057",
    "variant 38: 42534efeff34d0e88786a66e1bf982c5 status Some(\"arquivado\") None Some(1) None 86 cb58e4b2e6e5530d",
    "variant 39: c2e8682c62b2325f9e6e1e54066d4581 tags Some(\"open\") None Some(5) None 75 24403ddffde2c175",
    "variant 40: 8227be3131de330c4a9c403b7274065e tags Some(\"tag-sync\") Some(7) Some(5) None 129 1f6eda1163ae4c63",
    "variant 41: 209c8768955a513768a73890e9e32fcb tags Some(\"Tag-Sync\") None Some(5) None 95 e5a282dcda8a407e",
    "variant 42: b37d396fa1efb2123a66147d0bcdfde5 tags Some(\"tag-sync\") None Some(5) None 74 e61abcd8e290c2d5",
    "variant 43: fa09a3519f472c7dec4daf6a8cbaa53c tags Some(\"tag-sync\") None Some(5) None 65 c01d0b2411eddfa2",
    "variant 44: 9dbcc6ec688ecb993df917a863c61a62 tags Some(\"tag-sync\") None Some(5) None 59 fe8c0d6db863c3e5",
    "variant 45: 1102fa8a42a6c80b6c07bedca919db23 tags Some(\"tag-sync\") Some(8) None None 88 f3f602a7cdd79d0d",
    "variant 46: 224f24579ab0f5833e3865f380ea219d status Some(\"open\") None Some(1) None 119 f9751357fc39b4a6",
    "variant 47: 7e22fd58ce6761f3fe3df018bf45200d other None None None None 87 ca49da18c9be3ff3",
    "variant 48: 642860e5a100e94b3a662dc980dbffc9 other None None None None 71 4e462b0c282d8be9",
    "variant 49: 224f24579ab0f5833e3865f380ea219d status Some(\"open\") None Some(1) None 81 208cbf74321a1d06",
    "variant 50: 4310f17350af332dbeb64e87df1804cd status Some(\"open\") None Some(1) None 29 36fdb02610b408fa",
    "variant 51: fcd134e84bd2f03197c8a07d27b96191 media Some(\"fila-data\") None None None 36 874b5484ecf5fb21",
    "variant 52: 05f7d3998b7619c1f69fa1604d75ac72 other None None None None 98 8365248b5e6eb8aa",
    "variant 53: 224f24579ab0f5833e3865f380ea219d status Some(\"open\") None Some(1) None 60 28de51eb2d6b104c",
    "variant 54: d1ba8a7e15be2c8aa30a7eab6f499fa1 status Some(\"open\") None None None 15 f1629f77367ea746",
    "variant 55: b45aee2f0c14c49dc4b0b760c587bddb other None None None None 54 a9f369a5ec409f81",
    "variant 56: 1eee508fac3342fc4c6313295876a17f message Some(\"start\") None Some(1) None 77 3d4316394f4d1674",
    "variant 57: ffdb7fa8bda0a62e3a43d85fb0864e0c other None None None None 54 6b30ac170b4e989d",
    "variant 58: b63e844c7cb9359021b1b3abcbde1dd9 other None None None None 93 80f22cda759efa72",
    "variant 59: error: body is not valid JSON: unexpected end of hex escape at line 1 column 17",
    "variant 60: error: body is not valid JSON: number out of range at line 1 column 14",
    "variant 61: error: body is not valid JSON: lone leading surrogate in hex escape at line 2 column 18",
    "variant 62: error: body is not valid JSON: unexpected end of hex escape at line 1 column 18",
    "variant 63: error: body is JSON but not an object",
    "deep 0: c8cc0931853d9bea3ece3d3ea537a16b other None None None None 256 a6e74d53a79d4be0",
    "deep token 0: 96bfbdda3ba9fd866186e7ddcbdcce04 other None None None None 22 395e1eef4ac715ed",
    "deep n8n 0: 504521f54376962491f66800496021f4 other None None None None 254 94d57740d988aa59",
    "deep 1: c3da38c978bfa7b7f461e8eda7191ff1 other None None None None 258 4c70705e0b74bd7e",
    "deep token 1: 4ec3fc2372d2ab37897f711890e0cfc3 other None None None None 22 395e1eef4ac715ed",
    "deep n8n 1: ac9b3a56257bf4a1409a1d3d759b41b7 other None None None None 256 b1a3daf7100f31b4",
    "deep 2: error: body is not valid JSON: recursion limit exceeded at line 1 column 132",
    "deep token 2: error: body is not valid JSON: recursion limit exceeded at line 1 column 136",
    "deep n8n 2: error: body is not valid JSON: recursion limit exceeded at line 1 column 139",
];

#[test]
fn every_case_keeps_its_meta_and_relayed_bytes() {
    let actual: Vec<String> = cases()
        .iter()
        .map(|(name, body)| format!("{name}: {}", describe(body)))
        .collect();
    if actual != EXPECTED {
        for line in &actual {
            println!("        {line:?},");
        }
    }
    assert_eq!(actual.len(), EXPECTED.len());
    for (actual, expected) in actual.iter().zip(EXPECTED) {
        assert_eq!(actual, expected);
    }
}
