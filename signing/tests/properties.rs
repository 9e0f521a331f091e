//! Property tests of signing and verification: round trips for arbitrary JSON actions,
//! tampering, key order / whitespace / escaping independence, replay, rotation, and the
//! order of checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::time::Duration;

use common::Rng;
use kubesafe_signing::jcs::{Canonicalizer, MAX_SAFE_INTEGER};
use kubesafe_signing::{
    Envelope, ErrorCode, InMemoryReplayStore, KeyRing, Limits, Nonce, Provenance, Rejection,
    Secret, Verifier,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const NOW: u64 = 1_700_000_000;
const TTL: u64 = 300;

fn ring() -> KeyRing {
    let mut r = KeyRing::new();
    r.insert_active("k1", Secret::new(vec![0x11; 32]).unwrap())
        .unwrap();
    r
}

fn verifier(keys: KeyRing) -> Verifier {
    Verifier::new(keys, InMemoryReplayStore::new(1_000))
}

fn sign(action: &Value, nonce: &str) -> Envelope {
    ring()
        .sign_at(
            action,
            NOW,
            Duration::from_secs(TTL),
            Nonce::new(nonce).unwrap(),
        )
        .unwrap()
}

fn canonical(v: &Value) -> String {
    Canonicalizer::strict().to_string(v).unwrap()
}

/// The value the canonical bytes of `v` read back as: what the MAC really covers.
fn reparsed(v: &Value) -> Value {
    serde_json::from_str(&canonical(v)).unwrap()
}

/// Arbitrary JSON the strict policy accepts: any strings (all of Unicode, control
/// characters included), safe integers, finite doubles within ±(2^53 - 1), nesting.
fn arb_json() -> impl Strategy<Value = Value> {
    let safe = MAX_SAFE_INTEGER as i64;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-safe..=safe).prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite and safe", |f| f.is_finite()
                && f.abs() <= MAX_SAFE_INTEGER as f64)
            .prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn nonce_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{16,40}"
}

/// Writes `v` as valid but non-canonical JSON: shuffled members, random whitespace, random
/// escaping of string characters (including `\/` and `\uXXXX` surrogate pairs), doubles in
/// exponent notation.
fn write_messy(v: &Value, rng: &mut Rng, out: &mut String) {
    ws(rng, out);
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) if n.is_f64() => out.push_str(&format!("{:e}", n.as_f64().unwrap())),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_messy_string(s, rng, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_messy(item, rng, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            for i in (1..entries.len()).rev() {
                entries.swap(i, rng.below(i as u64 + 1) as usize);
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                write_messy_string(k, rng, out);
                ws(rng, out);
                out.push(':');
                write_messy(item, rng, out);
            }
            out.push('}');
        }
    }
    ws(rng, out);
}

fn ws(rng: &mut Rng, out: &mut String) {
    for _ in 0..rng.below(3) {
        out.push([' ', '\n', '\t', '\r'][rng.below(4) as usize]);
    }
}

fn write_messy_string(s: &str, rng: &mut Rng, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let must = c == '"' || c == '\\' || (c as u32) < 0x20;
        if must || rng.below(4) == 0 {
            match c {
                '\n' if rng.below(2) == 0 => out.push_str("\\n"),
                '"' if rng.below(2) == 0 => out.push_str("\\\""),
                '\\' if rng.below(2) == 0 => out.push_str("\\\\"),
                '/' => out.push_str("\\/"),
                _ => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        if rng.below(2) == 0 {
                            out.push_str(&format!("\\u{:04x}", u));
                        } else {
                            out.push_str(&format!("\\u{:04X}", u));
                        }
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// sign → either wire form → parse → verify gives back the same action.
    #[test]
    fn sign_verify_round_trips_arbitrary_actions(action in arb_json(), nonce in nonce_strategy(), token in any::<bool>()) {
        let env = sign(&action, &nonce);
        let wire = if token { env.to_token() } else { env.to_json() };
        let parsed = Envelope::parse(wire.as_bytes(), &Limits::new(1 << 20, 32)).unwrap();
        prop_assert_eq!(parsed.to_json(), env.to_json());
        let verified = verifier(ring()).verify_at(parsed, NOW + 1).unwrap();
        prop_assert_eq!(canonical(verified.action()), canonical(&action));
        // Not only the same canonical bytes: the very value those bytes read back as.
        prop_assert_eq!(verified.action(), &reparsed(&action));
        prop_assert_eq!(verified.kid(), "k1");
    }

    /// Any single-bit change of the wire bytes is refused — unless it left the signed
    /// content unchanged (e.g. `1e-7` → `1E-7`, `\u000f` → `\u000F`), which we check
    /// explicitly: nothing with a different meaning is ever accepted.
    #[test]
    fn single_bit_flips_of_the_wire_form_are_refused(
        action in arb_json(), nonce in nonce_strategy(), bit in any::<prop::sample::Index>(), token in any::<bool>()
    ) {
        let env = sign(&action, &nonce);
        let wire = if token { env.to_token() } else { env.to_json() };
        let mut bytes = wire.into_bytes();
        let i = bit.index(bytes.len() * 8);
        bytes[i / 8] ^= 1 << (i % 8);
        let limits = Limits::new(1 << 20, 32);
        if let Ok(flipped) = Envelope::parse(&bytes, &limits) {
            match verifier(ring()).verify_at(flipped.clone(), NOW + 1) {
                Ok(_) => prop_assert_eq!(flipped.to_json(), env.to_json()),
                Err(r) => prop_assert!(matches!(
                    r,
                    Rejection::BadMac { .. } | Rejection::UnknownKid { .. } | Rejection::Malformed(_)
                        | Rejection::Expired { .. } | Rejection::NotYetValid { .. }
                        | Rejection::LifetimeTooLong { .. }
                ), "{r:?}"),
            }
        }
    }

    /// Any single-bit change of the MAC tag is refused as a bad MAC.
    #[test]
    fn single_bit_flips_of_the_mac_are_refused(action in arb_json(), bit in 0usize..256) {
        let env = sign(&action, "AAAAAAAAAAAAAAAAAAAAAA");
        let mut value: Value = serde_json::from_str(&env.to_json()).unwrap();
        let mut mac = *env.mac();
        mac[bit / 8] ^= 1 << (bit % 8);
        use base64::Engine as _;
        value["mac"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac));
        let flipped = Envelope::from_value(value).unwrap();
        let result = verifier(ring()).verify_at(flipped, NOW + 1);
        prop_assert!(matches!(result, Err(Rejection::BadMac { .. })), "{result:?}");
    }

    /// Member order, whitespace, string escaping and number spelling do not matter.
    #[test]
    fn key_order_whitespace_and_escaping_do_not_matter(action in arb_json(), nonce in nonce_strategy(), seed in any::<u64>()) {
        let env = sign(&action, &nonce);
        let value: Value = serde_json::from_str(&env.to_json()).unwrap();
        let mut messy = String::new();
        write_messy(&value, &mut Rng(seed | 1), &mut messy);
        let parsed = Envelope::from_json(messy.as_bytes(), &Limits::new(1 << 20, 32)).unwrap();
        let verified = verifier(ring()).verify_at(parsed, NOW + 1).unwrap();
        prop_assert_eq!(canonical(verified.action()), canonical(&action));
        prop_assert_eq!(verified.action(), &reparsed(&action));
    }

    /// Doubles survive signing and verification bit for bit (-0 becomes 0).
    #[test]
    fn doubles_round_trip_exactly(x in any::<f64>().prop_filter("safe", |f| f.is_finite() && f.abs() <= MAX_SAFE_INTEGER as f64)) {
        let env = sign(&json!({"x": x}), "AAAAAAAAAAAAAAAAAAAAAA");
        let parsed = Envelope::from_json(env.to_json().as_bytes(), &Limits::default()).unwrap();
        let verified = verifier(ring()).verify_at(parsed, NOW).unwrap();
        let back = verified.action()["x"].as_f64().unwrap();
        prop_assert_eq!(back.to_bits(), if x == 0.0 { 0.0f64.to_bits() } else { x.to_bits() });
    }

    /// A second presentation anywhere inside the validity window is a replay; after it,
    /// the envelope has expired.
    #[test]
    fn replay_inside_the_window_is_refused(action in arb_json(), first in 0u64..TTL, later in 0u64..(TTL + 60)) {
        let env = sign(&action, "BBBBBBBBBBBBBBBBBBBBBB");
        let v = verifier(ring()).with_skew(Duration::from_secs(30));
        v.verify_at(env.clone(), NOW + first).unwrap();
        let second = (NOW + first + later).min(NOW + TTL + 30 + 10);
        match v.verify_at(env, second) {
            Err(Rejection::Replayed { .. }) => prop_assert!(second < NOW + TTL + 30),
            Err(Rejection::Expired { .. }) => prop_assert!(second >= NOW + TTL + 30),
            other => prop_assert!(false, "{other:?}"),
        }
    }
}

#[test]
fn rotation_old_kid_verifies_while_in_the_ring_and_fails_after_removal() {
    let old = Secret::new(vec![1; 32]).unwrap();
    let new = Secret::new(vec![2; 32]).unwrap();
    let mut signer = KeyRing::new();
    signer.insert_active("2024-01", old.clone()).unwrap();
    let n = |s: &str| Nonce::new(format!("{s:A<22}")).unwrap();
    let by_old = signer
        .sign_at(&json!({"a": 1}), NOW, Duration::from_secs(60), n("a"))
        .unwrap();

    // Verifiers learn the new key first; the signer switches to it.
    let mut keys = KeyRing::new();
    keys.insert_verify_only("2024-01", old).unwrap();
    keys.insert_verify_only("2024-07", new.clone()).unwrap();
    let mut v = verifier(keys);
    signer.insert_active("2024-07", new).unwrap();
    assert_eq!(signer.active_kid(), Some("2024-07"));
    let by_new = signer
        .sign_at(&json!({"a": 2}), NOW, Duration::from_secs(60), n("b"))
        .unwrap();
    assert_eq!(by_new.kid(), "2024-07");

    // Both verify during the overlap.
    v.verify_at(by_old.clone(), NOW + 1).unwrap();
    v.verify_at(by_new.clone(), NOW + 1).unwrap();

    // After removal, the old kid is unknown (a fresh, unreplayed envelope of it).
    let by_old_2 = {
        let mut s = KeyRing::new();
        s.insert_active("2024-01", Secret::new(vec![1; 32]).unwrap())
            .unwrap();
        s.sign_at(&json!({"a": 3}), NOW, Duration::from_secs(60), n("c"))
            .unwrap()
    };
    assert!(v.keys_mut().remove("2024-01"));
    let err = v.verify_at(by_old_2, NOW + 2).unwrap_err();
    assert_eq!(
        err,
        Rejection::UnknownKid {
            kid: "2024-01".into()
        }
    );
    assert_eq!(err.code(), ErrorCode::Unauthorized);
    let by_new_2 = signer
        .sign_at(&json!({"a": 4}), NOW, Duration::from_secs(60), n("d"))
        .unwrap();
    v.verify_at(by_new_2, NOW + 2).unwrap();
}

#[test]
fn a_different_key_under_the_same_kid_is_a_bad_mac() {
    let env = sign(&json!({"a": 1}), "CCCCCCCCCCCCCCCCCCCCCC");
    let mut keys = KeyRing::new();
    keys.insert_verify_only("k1", Secret::new(vec![0x12; 32]).unwrap())
        .unwrap();
    let err = verifier(keys).verify_at(env, NOW).unwrap_err();
    assert_eq!(err, Rejection::BadMac { kid: "k1".into() });
    assert_eq!(err.code(), ErrorCode::Unauthorized);
}

#[test]
fn forged_envelopes_never_reach_the_replay_store() {
    let genuine = sign(&json!({"type": "restart_pod"}), "DDDDDDDDDDDDDDDDDDDDDD");
    let mut forged: Value = serde_json::from_str(&genuine.to_json()).unwrap();
    forged["action"] = json!({"type": "delete_everything"});
    let forged = Envelope::from_value(forged).unwrap();
    let v = verifier(ring());
    for _ in 0..10 {
        assert!(matches!(
            v.verify_at(forged.clone(), NOW),
            Err(Rejection::BadMac { .. })
        ));
    }
    assert!(v.replay_store().is_empty());
    // The genuine envelope with the same nonce still goes through, once.
    v.verify_at(genuine.clone(), NOW).unwrap();
    assert_eq!(v.replay_store().len(), 1);
    assert!(matches!(
        v.verify_at(genuine, NOW),
        Err(Rejection::Replayed { .. })
    ));
}

#[test]
fn time_window_boundaries_and_skew() {
    let env = sign(&json!(null), "EEEEEEEEEEEEEEEEEEEEEE");
    let skew = 30;
    let v = || verifier(ring()).with_skew(Duration::from_secs(skew));
    // Valid from iat - skew ...
    v().verify_at(env.clone(), NOW - skew).unwrap();
    assert_eq!(
        v().verify_at(env.clone(), NOW - skew - 1).unwrap_err(),
        Rejection::NotYetValid {
            iat: NOW,
            now: NOW - skew - 1,
            skew_secs: skew
        }
    );
    // ... until exp + skew (exclusive).
    v().verify_at(env.clone(), NOW + TTL + skew - 1).unwrap();
    let err = v().verify_at(env.clone(), NOW + TTL + skew).unwrap_err();
    assert!(matches!(err, Rejection::Expired { .. }));
    assert_eq!(err.code(), ErrorCode::Unauthorized);
    // Zero skew.
    let strict = verifier(ring()).with_skew(Duration::ZERO);
    assert!(matches!(
        strict.verify_at(env.clone(), NOW + TTL),
        Err(Rejection::Expired { .. })
    ));
    // Lifetime above the verifier's maximum.
    let err = verifier(ring())
        .with_max_ttl(Duration::from_secs(TTL - 1))
        .verify_at(env.clone(), NOW)
        .unwrap_err();
    assert_eq!(
        err,
        Rejection::LifetimeTooLong {
            ttl_secs: TTL,
            max_ttl_secs: TTL - 1
        }
    );
    // The replay entry lives until exp + skew.
    let v = v();
    v.verify_at(env, NOW).unwrap();
    assert_eq!(v.replay_store().len(), 1);
}

#[test]
fn a_full_replay_store_refuses_with_retry_later() {
    let v = Verifier::new(ring(), InMemoryReplayStore::new(2));
    for s in ["F", "G"] {
        v.verify_at(sign(&json!(1), &s.repeat(22)), NOW).unwrap();
    }
    let err = v
        .verify_at(sign(&json!(1), &"H".repeat(22)), NOW + 10)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::RetryLater);
    // Entries expire at exp + skew = NOW + 300 + 30.
    assert_eq!(err.retry_after_secs(), Some(TTL + 30 - 10));
}

#[test]
fn typed_verification_and_provenance() {
    use kubesafe_signing::action::ActionRequest;
    let env = sign(
        &json!({"type": "restart_pod", "namespace": "shop", "name": "web-0"}),
        "IIIIIIIIIIIIIIIIIIIIII",
    );
    let v = verifier(ring());
    let verified = v.verify_as_at::<ActionRequest>(env, NOW).unwrap();
    assert_eq!(verified.action().name(), "web-0");
    assert_eq!(
        verified.provenance(),
        &Provenance::Envelope {
            kid: "k1".into(),
            nonce: "IIIIIIIIIIIIIIIIIIIIII".into(),
            iat: NOW,
            exp: NOW + TTL
        }
    );
    let bad = sign(
        &json!({"type": "scale_deployment", "namespace": "shop", "name": "web"}),
        "JJJJJJJJJJJJJJJJJJJJJJ",
    );
    let err = v.verify_as_at::<ActionRequest>(bad, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::SchemaValidationFailed);
    assert!(err.to_string().contains("params.replicas"), "{err}");
}

/// `3`, `3.0`, `30e-1` and `3E0` have one canonical form, so they share a MAC: whichever
/// spelling arrives, the verifier must hand out the value the MAC covers (the integer 3),
/// not the spelling (a double that `as_u64()` refuses and a typed `u32` rejects). The same
/// for `-0` and `0`.
#[test]
fn equivalent_number_spellings_verify_to_the_value_the_mac_covers() {
    use kubesafe_signing::action::{ActionParams, ActionRequest, ScaleDeploymentParams};
    let action = json!({"type": "scale_deployment", "namespace": "shop", "name": "web",
                        "params": {"replicas": 3}});
    let env = sign(&action, "KKKKKKKKKKKKKKKKKKKKKK");
    let wire = env.to_json();
    assert!(wire.contains(r#""replicas":3}"#), "{wire}");
    for spelling in ["3", "3.0", "30e-1", "3E0", "0.3e1"] {
        let variant = wire.replace(r#""replicas":3}"#, &format!(r#""replicas":{spelling}}}"#));
        let parsed = Envelope::from_json(variant.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(parsed.to_json(), wire, "{spelling}: same canonical form");
        assert_eq!(parsed.action(), &action, "{spelling}: parsed action");
        let v = verifier(ring());
        let verified = v.verify_at(parsed.clone(), NOW).unwrap();
        assert_eq!(verified.action(), &action, "{spelling}");
        assert_eq!(
            verified.action()["params"]["replicas"].as_u64(),
            Some(3),
            "{spelling}"
        );
        let typed = verifier(ring())
            .verify_as_at::<ActionRequest>(parsed, NOW)
            .unwrap_or_else(|e| panic!("{spelling}: {e}"));
        assert_eq!(
            typed.action().params(),
            &ActionParams::ScaleDeployment(ScaleDeploymentParams { replicas: 3 })
        );
    }
    let zero = sign(&json!({"x": 0, "y": [0.5, -2]}), "LLLLLLLLLLLLLLLLLLLLLL").to_json();
    for (x, y) in [("-0", "-2"), ("-0.0", "-2.0"), ("0e5", "-20e-1")] {
        let variant = zero
            .replace(r#""x":0"#, &format!(r#""x":{x}"#))
            .replace("-2]", &format!("{y}]"));
        let parsed = Envelope::from_json(variant.as_bytes(), &Limits::default()).unwrap();
        let verified = verifier(ring()).verify_at(parsed, NOW).unwrap();
        assert_eq!(
            verified.action(),
            &json!({"x": 0, "y": [0.5, -2]}),
            "{x} {y}"
        );
        assert_eq!(verified.action()["x"].as_u64(), Some(0));
        assert_eq!(verified.action()["y"][1].as_i64(), Some(-2));
    }
}

/// An envelope whose nonce was forgotten after it expired must not verify again when the
/// clock is stepped back into its window.
#[test]
fn a_clock_stepped_back_does_not_reopen_a_used_envelope() {
    let v = verifier(ring()).with_skew(Duration::from_secs(30));
    let used = sign(&json!({"type": "restart_pod"}), &"J".repeat(22));
    v.verify_at(used.clone(), NOW + 10).unwrap();
    // Much later another envelope arrives; the store purges the first nonce.
    let later = ring()
        .sign_at(
            &json!(1),
            NOW + 1000,
            Duration::from_secs(TTL),
            Nonce::new("K".repeat(22)).unwrap(),
        )
        .unwrap();
    v.verify_at(later, NOW + 1000).unwrap();
    assert_eq!(v.replay_store().len(), 1, "the first nonce was forgotten");
    // The clock goes back to inside the first envelope's window.
    let err = v.verify_at(used, NOW + 20).unwrap_err();
    assert!(
        matches!(err, Rejection::Expired { now, .. } if now == NOW + 1000),
        "{err:?}"
    );
    assert_eq!(err.code(), ErrorCode::Unauthorized);
}
