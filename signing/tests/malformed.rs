//! Fuzz-style tests: malformed input of every kind ends in a typed error — never a panic,
//! never a stack overflow — and maps to `SCHEMA_VALIDATION_FAILED`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::time::Duration;

use kubesafe_signing::admission::AdmissionError;
use kubesafe_signing::jcs::JcsError;
use kubesafe_signing::{
    Envelope, ErrorCode, InMemoryReplayStore, KeyRing, Limits, MalformedError, Nonce, ParseError,
    Rejection, Secret, Verifier,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000;

fn ring() -> KeyRing {
    let mut r = KeyRing::new();
    r.insert_active("k1", Secret::new(vec![7; 32]).unwrap())
        .unwrap();
    r
}

fn sample() -> Envelope {
    ring()
        .sign_at(
            &json!({"type": "restart_pod", "namespace": "shop", "name": "web-0",
                    "note": "ünïcödé \u{1f600}"}),
            NOW,
            Duration::from_secs(300),
            Nonce::new("AAAAAAAAAAAAAAAAAAAAAA").unwrap(),
        )
        .unwrap()
}

fn verify(input: &[u8]) -> Result<Value, Rejection> {
    Verifier::new(ring(), InMemoryReplayStore::new(10))
        .verify_bytes(input)
        .map(|v| v.into_action())
}

fn malformed(input: &[u8]) -> MalformedError {
    match verify(input) {
        Err(Rejection::Malformed(m)) => {
            let code = AdmissionError::from(Rejection::Malformed(m.clone())).code;
            assert_eq!(code, ErrorCode::SchemaValidationFailed);
            m
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn every_truncation_of_a_token_is_a_typed_error() {
    let token = sample().to_token();
    for len in 0..token.len() {
        let err = Envelope::from_token(&token[..len], &Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                MalformedError::Token { .. }
                    | MalformedError::Json(_)
                    | MalformedError::InvalidField { .. }
            ),
            "len {len}: {err:?}"
        );
    }
    assert!(Envelope::from_token(&token, &Limits::default()).is_ok());
    // Padding, whitespace or a foreign alphabet inside the token are refused too.
    for bad in [
        format!("{token}="),
        format!("{token} "),
        token.replace('-', "+"),
        format!("ks2.{}", &token[4..]),
    ] {
        if bad != token {
            assert!(
                Envelope::from_token(&bad, &Limits::default()).is_err(),
                "{bad}"
            );
        }
    }
}

#[test]
fn every_truncation_of_the_json_form_is_a_typed_error() {
    let json = sample().to_json();
    for len in 0..json.len() {
        if !json.is_char_boundary(len) {
            continue;
        }
        let err = malformed(&json.as_bytes()[..len]);
        assert!(
            matches!(err, MalformedError::Json(ParseError::Syntax { .. })),
            "{len}: {err:?}"
        );
    }
}

#[test]
fn wrong_types_for_every_field_name_the_field() {
    let base: Value = serde_json::from_str(&sample().to_json()).unwrap();
    let wrong = [
        json!(null),
        json!(true),
        json!(1.5),
        json!(-3),
        json!("x y"),
        json!([]),
        json!({}),
    ];
    for field in ["v", "kid", "alg", "iat", "exp", "nonce", "mac"] {
        for w in &wrong {
            let mut v = base.clone();
            v[field] = w.clone();
            let err = Envelope::from_value(v).unwrap_err();
            let named = match &err {
                MalformedError::WrongType { field: f, .. }
                | MalformedError::InvalidField { field: f, .. }
                | MalformedError::MissingField { field: f } => *f == field,
                MalformedError::UnsupportedVersion { .. } => field == "v",
                MalformedError::UnsupportedAlgorithm { .. } => field == "alg",
                _ => false,
            };
            assert!(named, "{field} = {w}: {err:?}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}

#[test]
fn huge_numbers_are_typed_errors() {
    let base = sample().to_json();
    let cases: [(&str, &str); 7] = [
        ("\"iat\":1700000000", "\"iat\":1e400"),
        ("\"iat\":1700000000", "\"iat\":18446744073709551616"),
        ("\"iat\":1700000000", "\"iat\":9007199254740993"),
        ("\"v\":1", "\"v\":99999999999999999999999999"),
        (
            "\"name\":\"web-0\"",
            "\"name\":\"web-0\",\"n\":9007199254740993",
        ),
        ("\"name\":\"web-0\"", "\"name\":\"web-0\",\"n\":-1e300"),
        ("\"name\":\"web-0\"", "\"name\":\"web-0\",\"n\":1"),
    ];
    for (from, to) in &cases[..6] {
        let text = base.replace(from, to);
        assert_ne!(text, base);
        let err = malformed(text.as_bytes());
        assert!(
            matches!(
                err,
                MalformedError::Json(_)
                    | MalformedError::WrongType { .. }
                    | MalformedError::InvalidField { .. }
                    | MalformedError::UnsupportedVersion { .. }
                    | MalformedError::Action(JcsError::UnsafeNumber { .. })
            ),
            "{to}: {err:?}"
        );
    }
    // The unsafe integer inside the action is reported with its JSON Pointer.
    let text = base.replace(cases[4].0, cases[4].1);
    assert_eq!(
        malformed(text.as_bytes()),
        MalformedError::Action(JcsError::UnsafeNumber {
            path: "/n".into(),
            number: "9007199254740993".into()
        })
    );
    // A safe extra field changes the content: a bad MAC, not a malformed envelope.
    let text = base.replace(cases[6].0, cases[6].1);
    assert!(matches!(
        verify(text.as_bytes()),
        Err(Rejection::BadMac { .. })
    ));
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let base = sample().to_json();
    for depth in [33, 100, 1_000, 100_000] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            let text = base.replacen("\"name\":\"web-0\"", &format!("\"name\":{nested}"), 1);
            let limits = Limits::new(1 << 22, 32);
            let err = Verifier::new(ring(), InMemoryReplayStore::new(1))
                .with_limits(limits)
                .verify_bytes(text.as_bytes())
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    Rejection::Malformed(MalformedError::Json(ParseError::TooDeep { max: 32, .. }))
                ),
                "{depth}: {err:?}"
            );
            // Unterminated, too.
            let text = format!("{{\"action\":{}", open.repeat(depth));
            assert!(matches!(
                Envelope::from_json(text.as_bytes(), &limits),
                Err(MalformedError::Json(
                    ParseError::TooDeep { .. } | ParseError::Syntax { .. }
                ))
            ));
        }
    }
    // Deep nesting inside a token.
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    use base64::Engine as _;
    let token = format!(
        "ks1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(deep)
    );
    assert!(matches!(
        Envelope::from_token(&token, &Limits::default()),
        Err(MalformedError::Json(ParseError::TooDeep { .. }))
    ));
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let limits = Limits::new(1_000, 32);
    let big = format!("{{\"action\":\"{}\"}}", "x".repeat(2_000));
    assert!(matches!(
        Envelope::from_json(big.as_bytes(), &limits),
        Err(MalformedError::Json(ParseError::TooLarge {
            max: 1_000,
            ..
        }))
    ));
    use base64::Engine as _;
    let token = format!(
        "ks1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&big)
    );
    assert!(matches!(
        Envelope::from_token(&token, &limits),
        Err(MalformedError::Json(ParseError::TooLarge { .. }))
    ));
}

#[test]
fn duplicate_members_are_refused() {
    let base = sample().to_json();
    // A second "action" member: serde_json alone would keep the last one silently.
    let text = base.replacen('{', "{\"action\":{\"type\":\"delete\"},", 1);
    assert!(matches!(
        malformed(text.as_bytes()),
        MalformedError::Json(ParseError::DuplicateKey { ref key, .. }) if key == "action"
    ));
}

#[test]
fn non_objects_and_garbage() {
    for input in [
        &b""[..],
        b"null",
        b"[]",
        b"\"ks1.\"",
        b"42",
        b"ks1.",
        b"ks1.!!!",
        b"\xff\xfe",
        b"{",
        b"}",
    ] {
        let _ = malformed(input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// Arbitrary bytes: always a typed error (or, impossibly, a verified envelope).
    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = verify(&input) {
            let code = AdmissionError::from(e).code;
            prop_assert!(matches!(code, ErrorCode::SchemaValidationFailed | ErrorCode::Unauthorized));
        }
    }

    /// Random edits of a valid envelope (delete, insert, replace bytes).
    #[test]
    fn random_edits_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        token in any::<bool>(),
    ) {
        let env = sample();
        let mut bytes = if token { env.to_token() } else { env.to_json() }.into_bytes();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => { bytes.remove(i); }
                1 => bytes.insert(i, byte),
                _ => bytes[i] = byte,
            }
        }
        let result = verify(&bytes);
        if let Ok(action) = result {
            // Only an edit that kept the signed content can verify.
            let reparsed = Envelope::parse(&bytes, &Limits::default()).unwrap();
            prop_assert_eq!(reparsed.to_json(), env.to_json());
            prop_assert_eq!(action["name"].as_str(), Some("web-0"));
        }
    }

    /// Structurally valid JSON with random values in every field.
    #[test]
    fn random_field_values_never_panic(
        values in prop::collection::vec(
            prop_oneof![
                Just(json!(null)), any::<bool>().prop_map(|b| json!(b)),
                any::<i64>().prop_map(|i| json!(i)), any::<u64>().prop_map(|u| json!(u)),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
                ".{0,50}".prop_map(|s| json!(s)), Just(json!([])), Just(json!({"a": [1, {}]})),
            ],
            8,
        ),
        drop in prop::collection::vec(any::<bool>(), 8),
    ) {
        let fields = ["v", "kid", "alg", "iat", "exp", "nonce", "mac", "action"];
        let mut obj = serde_json::Map::new();
        for ((f, v), d) in fields.iter().zip(values).zip(drop) {
            if !d {
                obj.insert((*f).to_owned(), v);
            }
        }
        let text = serde_json::to_vec(&Value::Object(obj)).unwrap();
        let result = verify(&text);
        prop_assert!(result.is_err());
    }
}
