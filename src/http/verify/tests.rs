//! The verifier against tampered inputs: tokens, X-Signature-256, Standard Webhooks (the spec's
//! test vector), rotation, clocks.

use std::time::Duration;

use super::*;
use crate::config::Secret;

const TOKEN_A: &str = "tok-alpha-0123456789";
const TOKEN_B: &str = "tok-bravo-9876543210";
const SECRET_A: &str = "hmac-secret-alpha";
const SECRET_B: &str = "hmac-secret-bravo";
const BODY: &[u8] = br#"{"event":"message.create","id":42}"#;

// Standard Webhooks specification test vector.
const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TS: i64 = 1614265330;
const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const SPEC_ID_OK: Verified<'static> = Verified::StandardWebhooks {
    id: SPEC_ID.as_bytes(),
};
const MSG_1_OK: Verified<'static> = Verified::StandardWebhooks { id: b"msg_1" };

fn conn(tokens: &[&str], secrets: &[&str]) -> ConnectionSettings {
    ConnectionSettings {
        name: "test".to_owned(),
        tokens: tokens.iter().map(|t| Secret::new(*t)).collect(),
        hmac_secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        company_id: None,
        rules: Vec::new(),
        body: None,
    }
}

fn verifier(tokens: &[&str], secrets: &[&str]) -> Verifier {
    Verifier::new(&conn(tokens, secrets)).expect("test secrets are valid")
}

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).expect("test times are after 1970"))
}

fn now() -> SystemTime {
    at(1_700_000_000)
}

fn by_path(v: &Verifier, token: &str) -> Result<(), VerifyError> {
    v.verify(
        &Presented {
            path_token: Some(token),
            ..Default::default()
        },
        BODY,
        now(),
    )
    .map(|verified| assert_eq!(verified, Verified::Credential))
}

fn by_header(v: &Verifier, authorization: &str) -> Result<(), VerifyError> {
    v.verify(
        &Presented {
            authorization: Some(authorization.as_bytes()),
            ..Default::default()
        },
        BODY,
        now(),
    )
    .map(|verified| assert_eq!(verified, Verified::Credential))
}

fn by_sig256(v: &Verifier, signature: &str, body: &[u8]) -> Result<(), VerifyError> {
    v.verify(
        &Presented {
            signature_256: Some(signature.as_bytes()),
            ..Default::default()
        },
        body,
        now(),
    )
    .map(|verified| assert_eq!(verified, Verified::Credential))
}

fn standard<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> Presented<'a> {
    Presented {
        webhook_id: Some(id.as_bytes()),
        webhook_timestamp: Some(ts.as_bytes()),
        webhook_signature: Some(sig.as_bytes()),
        ..Default::default()
    }
}

fn spec_verifier() -> Verifier {
    verifier(&[], &[SPEC_SECRET])
}

fn spec_key() -> Vec<u8> {
    decode_secret(SPEC_SECRET).expect("spec secret decodes")
}

/// A valid Standard Webhooks signature for BODY by SECRET_A, sent at `ts`.
fn signed_at(ts: i64) -> (String, String) {
    (
        ts.to_string(),
        sign_standard(SECRET_A.as_bytes(), "msg_1", ts, BODY),
    )
}

fn flip_last(s: &str) -> String {
    let mut bytes = s.as_bytes().to_vec();
    let last = bytes.last_mut().expect("non-empty");
    *last ^= 1;
    String::from_utf8(bytes).expect("ascii stays utf-8")
}

// --- decode_secret ---

#[test]
fn decode_secret_whsec_is_base64() {
    assert_eq!(decode_secret("whsec_aGVsbG8="), Ok(b"hello".to_vec()));
    assert_eq!(spec_key().len(), 24);
}

#[test]
fn decode_secret_plain_is_raw_bytes() {
    assert_eq!(decode_secret("plain-secret"), Ok(b"plain-secret".to_vec()));
    // Only the exact prefix triggers decoding.
    assert_eq!(decode_secret("WHSEC_abc"), Ok(b"WHSEC_abc".to_vec()));
}

#[test]
fn decode_secret_errors() {
    assert_eq!(decode_secret(""), Err(SecretError::Empty));
    assert_eq!(decode_secret("whsec_"), Err(SecretError::Empty));
    assert_eq!(
        decode_secret("whsec_not base64!"),
        Err(SecretError::BadBase64)
    );
    // One character past a multiple of four holds no whole byte, padded or not.
    assert_eq!(decode_secret("whsec_aGVsb"), Err(SecretError::BadBase64));
    assert_eq!(decode_secret("whsec_aGVsb==="), Err(SecretError::BadBase64));
}

#[test]
fn decode_secret_whsec_padding_is_optional() {
    // The reference library's own unpadded-secret cases: none, one and two `=` missing.
    assert_eq!(decode_secret("whsec_aGVsbG8"), Ok(b"hello".to_vec()));
    assert_eq!(decode_secret("whsec_aGVsbA"), Ok(b"hell".to_vec()));
    assert_eq!(decode_secret("whsec_aGVsbA=="), Ok(b"hell".to_vec()));
    assert_eq!(
        decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        Ok(spec_key())
    );
    // Unused low bits of the last character are ignored, as Go's and Python's decoders do:
    // `S` and `Q` differ only there.
    assert_eq!(
        decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS"),
        decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaQ=")
    );
}

#[test]
fn new_rejects_bad_secrets_and_empty_tokens() {
    assert_eq!(
        Verifier::new(&conn(&[], &["whsec_%%%"])).err(),
        Some(SecretError::BadBase64)
    );
    assert_eq!(
        Verifier::new(&conn(&[], &[""])).err(),
        Some(SecretError::Empty)
    );
    assert_eq!(
        Verifier::new(&conn(&[""], &[])).err(),
        Some(SecretError::Empty)
    );
}

#[test]
fn debug_does_not_print_secrets() {
    let v = verifier(&[TOKEN_A], &[SECRET_A]);
    let text = format!("{v:?}");
    assert!(
        !text.contains(TOKEN_A) && !text.contains(SECRET_A),
        "{text}"
    );
    assert!(text.contains("Verifier"), "{text}");
}

// --- nothing presented ---

#[test]
fn the_head_check_settles_tokens_and_leaves_signatures_to_the_body() {
    let v = verifier(&["tok-aaaaaaaa"], &["secret"]);
    let token = Presented {
        path_token: Some("tok-aaaaaaaa"),
        ..Presented::default()
    };
    assert_eq!(v.check_head(&token), HeadCheck::Verified);
    let wrong = Presented {
        path_token: Some("tok-aaaaaaab"),
        ..Presented::default()
    };
    assert_eq!(
        v.check_head(&wrong),
        HeadCheck::Refused(VerifyError::BadToken)
    );
    assert_eq!(
        v.check_head(&Presented::default()),
        HeadCheck::Refused(VerifyError::Missing)
    );
    // A wrong token beside a signature: the signature may still prove the caller.
    let signed = Presented {
        path_token: Some("tok-aaaaaaab"),
        signature_256: Some(b"sha256=00"),
        ..Presented::default()
    };
    assert_eq!(v.check_head(&signed), HeadCheck::NeedsBody);
    // An unknown connection answers as a known one does, step for step.
    assert_eq!(
        Verifier::NONE.check_head(&wrong),
        HeadCheck::Refused(VerifyError::BadToken)
    );
    assert_eq!(Verifier::NONE.check_head(&signed), HeadCheck::NeedsBody);
    let body = b"{}";
    let sig = sign_body(b"secret", body);
    let presented = Presented {
        signature_256: Some(sig.as_bytes()),
        ..Presented::default()
    };
    assert_eq!(
        Verifier::NONE.verify(&presented, body, now()),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn nothing_presented_is_missing() {
    let v = verifier(&[TOKEN_A], &[SECRET_A]);
    assert_eq!(
        v.verify(&Presented::default(), BODY, now()),
        Err(VerifyError::Missing)
    );
}

// --- path token ---

#[test]
fn path_token_correct() {
    assert_eq!(by_path(&verifier(&[TOKEN_A], &[]), TOKEN_A), Ok(()));
}

#[test]
fn path_token_wrong() {
    let v = verifier(&[TOKEN_A], &[]);
    assert_eq!(
        by_path(&v, "something-else-entirely"),
        Err(VerifyError::BadToken)
    );
    assert_eq!(by_path(&v, ""), Err(VerifyError::BadToken));
}

#[test]
fn path_token_differing_in_last_byte() {
    let v = verifier(&[TOKEN_A], &[]);
    assert_eq!(by_path(&v, &flip_last(TOKEN_A)), Err(VerifyError::BadToken));
}

#[test]
fn path_token_prefix_or_extension_of_valid() {
    let v = verifier(&[TOKEN_A], &[]);
    assert_eq!(
        by_path(&v, &TOKEN_A[..TOKEN_A.len() - 1]),
        Err(VerifyError::BadToken)
    );
    assert_eq!(
        by_path(&v, &format!("{TOKEN_A}x")),
        Err(VerifyError::BadToken)
    );
}

#[test]
fn token_rotation_second_token_valid() {
    let v = verifier(&[TOKEN_A, TOKEN_B], &[]);
    assert_eq!(by_path(&v, TOKEN_B), Ok(()));
    assert_eq!(by_path(&v, TOKEN_A), Ok(()));
    assert_eq!(by_header(&v, &format!("Bearer {TOKEN_B}")), Ok(()));
}

#[test]
fn connection_without_tokens_rejects_tokens() {
    let v = verifier(&[], &[SECRET_A]);
    assert_eq!(by_path(&v, TOKEN_A), Err(VerifyError::BadToken));
    assert_eq!(
        by_header(&v, &format!("Bearer {TOKEN_A}")),
        Err(VerifyError::BadToken)
    );
}

#[test]
fn the_placeholder_is_refused_even_when_configured() {
    let v = verifier(&["change-me", TOKEN_A], &[]);
    assert_eq!(by_path(&v, "change-me"), Err(VerifyError::BadToken));
    assert_eq!(
        by_header(&v, "Bearer change-me"),
        Err(VerifyError::BadToken)
    );
    assert_eq!(by_path(&v, TOKEN_A), Ok(()));
}

// --- Authorization: Bearer ---

#[test]
fn bearer_ok() {
    let v = verifier(&[TOKEN_A], &[]);
    assert_eq!(by_header(&v, &format!("Bearer {TOKEN_A}")), Ok(()));
    assert_eq!(by_header(&v, &format!("bearer {TOKEN_A}")), Ok(()));
    assert_eq!(by_header(&v, &format!("BEARER   {TOKEN_A}")), Ok(()));
}

#[test]
fn bearer_wrong_token() {
    let v = verifier(&[TOKEN_A], &[]);
    assert_eq!(
        by_header(&v, &format!("Bearer {}", flip_last(TOKEN_A))),
        Err(VerifyError::BadToken)
    );
}

#[test]
fn bearer_bad_scheme_or_shape() {
    let v = verifier(&[TOKEN_A], &[]);
    assert_eq!(
        by_header(&v, &format!("Basic {TOKEN_A}")),
        Err(VerifyError::Malformed)
    );
    // One word is taken as a bare token, and the word "Bearer" is none of ours.
    assert_eq!(by_header(&v, "Bearer"), Err(VerifyError::BadToken));
    assert_eq!(by_header(&v, "Bearer   "), Err(VerifyError::BadToken));
    assert_eq!(by_header(&v, "Bearer \t "), Err(VerifyError::BadToken));
    assert_eq!(
        by_header(&v, &format!("Bearer {TOKEN_A} extra")),
        Err(VerifyError::Malformed)
    );
}

// --- bare tokens: `Authorization: <token>` (Izing), `X-N8N-API-KEY: <token>` (Whazing) ---

fn by_api_key(v: &Verifier, key: &str) -> Result<(), VerifyError> {
    v.verify(
        &Presented {
            api_key: Some(key.as_bytes()),
            ..Default::default()
        },
        BODY,
        now(),
    )
    .map(|verified| assert_eq!(verified, Verified::Credential))
}

#[test]
fn bare_authorization_token() {
    let v = verifier(&[TOKEN_A, TOKEN_B], &[]);
    assert_eq!(by_header(&v, TOKEN_A), Ok(()));
    assert_eq!(by_header(&v, &format!("  {TOKEN_B}\t")), Ok(()));
    assert_eq!(
        by_header(&v, &flip_last(TOKEN_A)),
        Err(VerifyError::BadToken)
    );
    assert_eq!(
        by_header(&v, &TOKEN_A[..TOKEN_A.len() - 1]),
        Err(VerifyError::BadToken)
    );
    assert_eq!(
        by_header(&v, &format!("{TOKEN_A}x")),
        Err(VerifyError::BadToken)
    );
    assert_eq!(by_header(&v, ""), Err(VerifyError::Malformed));
}

#[test]
fn api_key_header_token() {
    let v = verifier(&[TOKEN_A], &[]);
    assert_eq!(by_api_key(&v, TOKEN_A), Ok(()));
    assert_eq!(by_api_key(&v, &format!(" {TOKEN_A} ")), Ok(()));
    assert_eq!(
        by_api_key(&v, &flip_last(TOKEN_A)),
        Err(VerifyError::BadToken)
    );
    assert_eq!(
        by_api_key(&v, &format!("Bearer {TOKEN_A}")),
        Err(VerifyError::Malformed)
    );
    assert_eq!(by_api_key(&v, ""), Err(VerifyError::Malformed));
    // A connection with secrets only takes no token, however it is presented.
    let signed_only = verifier(&[], &[SECRET_A]);
    assert_eq!(
        by_api_key(&signed_only, TOKEN_A),
        Err(VerifyError::BadToken)
    );
}

// --- X-Webhook-Signature: bare hex HMAC ---

fn by_hex(v: &Verifier, signature: &str, body: &[u8]) -> Result<(), VerifyError> {
    v.verify(
        &Presented {
            signature_hex: Some(signature.as_bytes()),
            ..Default::default()
        },
        body,
        now(),
    )
    .map(|verified| assert_eq!(verified, Verified::Credential))
}

fn hex_of(secret: &str, body: &[u8]) -> String {
    sign_body(secret.as_bytes(), body)["sha256=".len()..].to_owned()
}

#[test]
fn hex_signature_valid_either_case_and_rotated() {
    let v = verifier(&[], &[SECRET_A, SECRET_B]);
    assert_eq!(by_hex(&v, &hex_of(SECRET_A, BODY), BODY), Ok(()));
    assert_eq!(
        by_hex(&v, &hex_of(SECRET_B, BODY).to_uppercase(), BODY),
        Ok(())
    );
}

#[test]
fn hex_signature_tampered_body_digit_or_secret() {
    let v = verifier(&[], &[SECRET_A]);
    let good = hex_of(SECRET_A, BODY);
    let mut body = BODY.to_vec();
    body[5] ^= 1;
    assert_eq!(by_hex(&v, &good, &body), Err(VerifyError::BadSignature));
    let mut digits = good.clone().into_bytes();
    digits[10] = if digits[10] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(digits).expect("hex is ASCII");
    assert_eq!(by_hex(&v, &flipped, BODY), Err(VerifyError::BadSignature));
    assert_eq!(
        by_hex(&v, &hex_of(SECRET_B, BODY), BODY),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn hex_signature_malformed() {
    let v = verifier(&[], &[SECRET_A]);
    let good = hex_of(SECRET_A, BODY);
    assert_eq!(by_hex(&v, &good[..62], BODY), Err(VerifyError::Malformed));
    assert_eq!(
        by_hex(&v, &format!("{good}00"), BODY),
        Err(VerifyError::Malformed)
    );
    assert_eq!(
        by_hex(&v, &"zz".repeat(32), BODY),
        Err(VerifyError::Malformed)
    );
    assert_eq!(by_hex(&v, "", BODY), Err(VerifyError::Malformed));
    // A token is no signature.
    let tokens_only = verifier(&[TOKEN_A], &[]);
    assert_eq!(
        by_hex(&tokens_only, &good, BODY),
        Err(VerifyError::BadSignature)
    );
}

// --- X-Signature-256 ---

#[test]
fn sig256_valid() {
    let v = verifier(&[], &[SECRET_A]);
    let sig = sign_body(SECRET_A.as_bytes(), BODY);
    assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
    assert_eq!(by_sig256(&v, &sig, BODY), Ok(()));
}

#[test]
fn sig256_known_value() {
    // The widely published HMAC-SHA256 example (key "key", the quick brown fox).
    assert_eq!(
        sign_body(b"key", b"The quick brown fox jumps over the lazy dog"),
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
}

#[test]
fn sig256_flipped_body_byte() {
    let v = verifier(&[], &[SECRET_A]);
    let sig = sign_body(SECRET_A.as_bytes(), BODY);
    let mut body = BODY.to_vec();
    body[5] ^= 0x01;
    assert_eq!(by_sig256(&v, &sig, &body), Err(VerifyError::BadSignature));
}

#[test]
fn sig256_flipped_hex_digit() {
    let v = verifier(&[], &[SECRET_A]);
    let sig = sign_body(SECRET_A.as_bytes(), BODY);
    let mut bytes = sig.into_bytes();
    bytes[10] = if bytes[10] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(bytes).expect("ascii");
    assert_eq!(
        by_sig256(&v, &tampered, BODY),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn sig256_uppercase_hex_accepted() {
    let v = verifier(&[], &[SECRET_A]);
    let sig = sign_body(SECRET_A.as_bytes(), BODY);
    let upper = format!("sha256={}", sig["sha256=".len()..].to_ascii_uppercase());
    assert_ne!(upper, sig);
    assert_eq!(by_sig256(&v, &upper, BODY), Ok(()));
}

#[test]
fn sig256_missing_prefix_or_bad_hex() {
    let v = verifier(&[], &[SECRET_A]);
    let sig = sign_body(SECRET_A.as_bytes(), BODY);
    let bare = &sig["sha256=".len()..];
    assert_eq!(by_sig256(&v, bare, BODY), Err(VerifyError::Malformed));
    assert_eq!(
        by_sig256(&v, &format!("sha1={bare}"), BODY),
        Err(VerifyError::Malformed)
    );
    assert_eq!(
        by_sig256(&v, &sig[..sig.len() - 2], BODY),
        Err(VerifyError::Malformed)
    );
    assert_eq!(
        by_sig256(&v, &format!("sha256={}", "zz".repeat(32)), BODY),
        Err(VerifyError::Malformed)
    );
    assert_eq!(by_sig256(&v, "", BODY), Err(VerifyError::Malformed));
}

#[test]
fn sig256_secret_rotation_second_valid() {
    let v = verifier(&[], &[SECRET_A, SECRET_B]);
    assert_eq!(
        by_sig256(&v, &sign_body(SECRET_B.as_bytes(), BODY), BODY),
        Ok(())
    );
    let other = sign_body(b"unrelated-secret", BODY);
    assert_eq!(by_sig256(&v, &other, BODY), Err(VerifyError::BadSignature));
}

#[test]
fn connection_without_secrets_rejects_signatures() {
    let v = verifier(&[TOKEN_A], &[]);
    assert_eq!(
        by_sig256(&v, &sign_body(SECRET_A.as_bytes(), BODY), BODY),
        Err(VerifyError::BadSignature)
    );
    let (ts, sig) = signed_at(1_700_000_000);
    assert_eq!(
        v.verify(&standard("msg_1", &ts, &sig), BODY, now()),
        Err(VerifyError::BadSignature)
    );
}

// --- Standard Webhooks ---

#[test]
fn standard_spec_vector() {
    assert_eq!(
        sign_standard(&spec_key(), SPEC_ID, SPEC_TS, SPEC_BODY),
        SPEC_SIG
    );
    let p = standard(SPEC_ID, "1614265330", SPEC_SIG);
    assert_eq!(
        spec_verifier().verify(&p, SPEC_BODY, at(SPEC_TS)),
        Ok(SPEC_ID_OK)
    );
}

#[test]
fn standard_valid_with_plain_secret() {
    let v = verifier(&[], &[SECRET_A]);
    let (ts, sig) = signed_at(1_700_000_000);
    assert_eq!(
        v.verify(&standard("msg_1", &ts, &sig), BODY, now()),
        Ok(MSG_1_OK)
    );
}

#[test]
fn standard_names_the_signed_id_and_other_credentials_none() {
    let v = verifier(&[TOKEN_A], &[SECRET_A]);
    let (ts, sig) = signed_at(1_700_000_000);
    // The id as signed: surrounding blanks are no part of it (an HTTP parser drops them too).
    let padded = standard(" msg_1\t", &ts, &sig);
    let verified = v.verify(&padded, BODY, now());
    assert_eq!(verified, Ok(MSG_1_OK));
    assert_eq!(verified.map(|v| v.sender_id()), Ok(Some(&b"msg_1"[..])));
    // A cheaper credential that passes first leaves the id unverified, so unused.
    let with_token = Presented {
        path_token: Some(TOKEN_A),
        ..standard("msg_1", &ts, &sig)
    };
    let verified = v.verify(&with_token, BODY, now());
    assert_eq!(verified, Ok(Verified::Credential));
    assert_eq!(verified.map(|v| v.sender_id()), Ok(None));
    // A wrong token beside a valid signature: the signature is what verified.
    let wrong_token = Presented {
        path_token: Some("wrong-token-value"),
        ..standard("msg_1", &ts, &sig)
    };
    assert_eq!(v.verify(&wrong_token, BODY, now()), Ok(MSG_1_OK));
}

#[test]
fn standard_tolerance_is_five_minutes_either_way() {
    let v = verifier(&[], &[SECRET_A]);
    for offset in [-300, 300] {
        let (ts, sig) = signed_at(1_700_000_000 + offset);
        assert_eq!(
            v.verify(&standard("msg_1", &ts, &sig), BODY, now()),
            Ok(MSG_1_OK),
            "offset {offset}"
        );
    }
}

#[test]
fn standard_tolerance_counts_the_fraction_of_a_second() {
    // The Go library's "old timestamp fails": signed at floor(now) - 300, checked a moment
    // after that second began. The sender's side of the boundary stays open to the second.
    let v = verifier(&[], &[SECRET_A]);
    for (fraction, offset, expected) in [
        (Duration::from_nanos(1), -300, Err(VerifyError::Expired)),
        (Duration::from_millis(500), -300, Err(VerifyError::Expired)),
        (Duration::from_millis(999), -299, Ok(MSG_1_OK)),
        (Duration::ZERO, -300, Ok(MSG_1_OK)),
        (Duration::from_millis(999), 300, Ok(MSG_1_OK)),
        (Duration::ZERO, 301, Err(VerifyError::Expired)),
        (Duration::from_millis(999), 301, Err(VerifyError::Expired)),
    ] {
        let (ts, sig) = signed_at(1_700_000_000 + offset);
        assert_eq!(
            v.verify(&standard("msg_1", &ts, &sig), BODY, now() + fraction),
            expected,
            "now + {fraction:?}, offset {offset}"
        );
    }
}

#[test]
fn standard_expired_past_and_future() {
    let v = verifier(&[], &[SECRET_A]);
    for offset in [-360, 360, -301, 301] {
        let (ts, sig) = signed_at(1_700_000_000 + offset);
        assert_eq!(
            v.verify(&standard("msg_1", &ts, &sig), BODY, now()),
            Err(VerifyError::Expired),
            "{offset}"
        );
    }
    // The spec vector itself, checked six minutes too late or too early.
    let p = standard(SPEC_ID, "1614265330", SPEC_SIG);
    assert_eq!(
        spec_verifier().verify(&p, SPEC_BODY, at(SPEC_TS + 360)),
        Err(VerifyError::Expired)
    );
    assert_eq!(
        spec_verifier().verify(&p, SPEC_BODY, at(SPEC_TS - 360)),
        Err(VerifyError::Expired)
    );
}

#[test]
fn standard_timestamp_checked_before_signature() {
    // A garbage signature with a stale timestamp reports the timestamp.
    let p = standard(SPEC_ID, "1614265330", "v1,AAAA");
    assert_eq!(
        spec_verifier().verify(&p, SPEC_BODY, at(SPEC_TS + 3600)),
        Err(VerifyError::Expired)
    );
}

#[test]
fn standard_tampered_id_timestamp_or_body() {
    let v = spec_verifier();
    let tampered_id = standard("msg_p5jXN8AQM9LWM0D4loKWxJeK", "1614265330", SPEC_SIG);
    assert_eq!(
        v.verify(&tampered_id, SPEC_BODY, at(SPEC_TS)),
        Err(VerifyError::BadSignature)
    );
    let tampered_ts = standard(SPEC_ID, "1614265331", SPEC_SIG);
    assert_eq!(
        v.verify(&tampered_ts, SPEC_BODY, at(SPEC_TS)),
        Err(VerifyError::BadSignature)
    );
    let p = standard(SPEC_ID, "1614265330", SPEC_SIG);
    assert_eq!(
        v.verify(&p, br#"{"test": 2432232315}"#, at(SPEC_TS)),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn standard_several_signatures_second_valid() {
    let v = spec_verifier();
    let wrong = sign_standard(b"another-key", SPEC_ID, SPEC_TS, SPEC_BODY);
    let header = format!("{wrong} {SPEC_SIG}");
    assert_eq!(
        v.verify(
            &standard(SPEC_ID, "1614265330", &header),
            SPEC_BODY,
            at(SPEC_TS)
        ),
        Ok(SPEC_ID_OK)
    );
    let only_wrong = format!("{wrong} v1,bm90LWEtbWFj");
    assert_eq!(
        v.verify(
            &standard(SPEC_ID, "1614265330", &only_wrong),
            SPEC_BODY,
            at(SPEC_TS)
        ),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn standard_unknown_version_only_is_rejected() {
    let v = spec_verifier();
    let header = SPEC_SIG.replacen("v1,", "v2,", 1);
    let result = v.verify(
        &standard(SPEC_ID, "1614265330", &header),
        SPEC_BODY,
        at(SPEC_TS),
    );
    assert_eq!(result, Err(VerifyError::BadSignature));
    // Ignored entries do not spoil a valid one beside them.
    let mixed = format!("v1a,xyz {header} {SPEC_SIG}");
    assert_eq!(
        v.verify(
            &standard(SPEC_ID, "1614265330", &mixed),
            SPEC_BODY,
            at(SPEC_TS)
        ),
        Ok(SPEC_ID_OK)
    );
}

#[test]
fn standard_secret_rotation_second_valid() {
    let v = verifier(&[], &[SECRET_B, SPEC_SECRET]);
    assert_eq!(
        v.verify(
            &standard(SPEC_ID, "1614265330", SPEC_SIG),
            SPEC_BODY,
            at(SPEC_TS)
        ),
        Ok(SPEC_ID_OK)
    );
}

#[test]
fn standard_missing_one_header_is_malformed() {
    let v = spec_verifier();
    let full = standard(SPEC_ID, "1614265330", SPEC_SIG);
    let cases = [
        Presented {
            webhook_id: None,
            ..full
        },
        Presented {
            webhook_timestamp: None,
            ..full
        },
        Presented {
            webhook_signature: None,
            ..full
        },
    ];
    for p in cases {
        assert_eq!(
            v.verify(&p, SPEC_BODY, at(SPEC_TS)),
            Err(VerifyError::Malformed),
            "{p:?}"
        );
    }
}

#[test]
fn standard_malformed_values() {
    let v = spec_verifier();
    for ts in [
        "",
        "abc",
        "1614265330.5",
        "-1614265330",
        "+1614265330",
        "99999999999999999999",
    ] {
        let p = standard(SPEC_ID, ts, SPEC_SIG);
        assert_eq!(
            v.verify(&p, SPEC_BODY, at(SPEC_TS)),
            Err(VerifyError::Malformed),
            "timestamp {ts:?}"
        );
    }
    for sig in ["", "   ", "nocomma"] {
        let p = standard(SPEC_ID, "1614265330", sig);
        assert_eq!(
            v.verify(&p, SPEC_BODY, at(SPEC_TS)),
            Err(VerifyError::Malformed),
            "signature {sig:?}"
        );
    }
    let p = standard("", "1614265330", SPEC_SIG);
    assert_eq!(
        v.verify(&p, SPEC_BODY, at(SPEC_TS)),
        Err(VerifyError::Malformed)
    );
}

// --- several credentials at once ---

#[test]
fn any_valid_credential_suffices() {
    let v = verifier(&[TOKEN_A], &[SECRET_A]);
    let sig = sign_body(SECRET_A.as_bytes(), BODY);
    let p = Presented {
        path_token: Some("wrong-token-value"),
        authorization: Some(b"Basic dXNlcjpwYXNz"),
        signature_256: Some(sig.as_bytes()),
        ..Default::default()
    };
    assert_eq!(v.verify(&p, BODY, now()), Ok(Verified::Credential));
}

#[test]
fn most_informative_error_wins() {
    let v = verifier(&[TOKEN_A], &[SECRET_A]);
    let (ts, sig) = signed_at(1_700_000_000 - 3600);
    let p = Presented {
        path_token: Some("wrong-token-value"),
        authorization: Some(b"Basic dXNlcjpwYXNz"),
        ..standard("msg_1", &ts, &sig)
    };
    assert_eq!(v.verify(&p, BODY, now()), Err(VerifyError::Expired));
    let p = Presented {
        path_token: Some("wrong-token-value"),
        authorization: Some(b"Basic dXNlcjpwYXNz"),
        ..Default::default()
    };
    assert_eq!(v.verify(&p, BODY, now()), Err(VerifyError::BadToken));
}

#[test]
fn clock_before_epoch_does_not_panic() {
    let v = spec_verifier();
    let before = UNIX_EPOCH - Duration::from_secs(10);
    let p = standard(SPEC_ID, "1614265330", SPEC_SIG);
    assert_eq!(v.verify(&p, SPEC_BODY, before), Err(VerifyError::Expired));
}
