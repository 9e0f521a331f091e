//! Interoperability with signatures made by other implementations, run here:
//! Node's `crypto.createHmac` and Python's `hmac` (legacy hex mode, over the exact bytes of
//! `JSON.stringify` / `json.dumps` bodies), GitHub's documented `X-Hub-Signature-256`
//! example, and a version-1 envelope built and MACed by a Node script.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::time::Duration;

use common::{node, python};
use kubesafe_signing::action::{ActionRequest, ActionType};
use kubesafe_signing::legacy::LegacyVerifier;
use kubesafe_signing::{
    Envelope, InMemoryReplayStore, KeyRing, LegacySecret, Limits, Nonce, Provenance, Rejection,
    Secret, Verifier,
};
use serde_json::json;

const SECRET: &str = "engine-shared-secret-0123456789abcdef";

fn legacy() -> LegacyVerifier {
    LegacyVerifier::new(
        "engine",
        LegacySecret::new(SECRET.as_bytes().to_vec()).unwrap(),
    )
}

#[test]
fn github_documented_example() {
    // docs.github.com, "Validating webhook deliveries" → "Testing the webhook payload
    // validation".
    let v = LegacyVerifier::new(
        "github",
        LegacySecret::new_allow_short(b"It's a Secret to Everybody".to_vec()).unwrap(),
    );
    let sig = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(v.sign_hex(b"Hello, World!"), sig);
    v.verify_mac(b"Hello, World!", sig).unwrap();
    v.verify_mac(b"Hello, World!", &format!("sha256={sig}"))
        .unwrap();
    assert!(v.verify_mac(b"Hello, World!\n", sig).is_err());
}

/// Node signs `JSON.stringify({actionType, actionParams, requestedBy})` the way the common
/// design does; we verify the exact bytes it produced.
#[test]
fn node_create_hmac_signatures_verify() {
    let script = r#"
        const crypto = require('crypto');
        const secret = require('fs').readFileSync(0, 'utf8');
        const bodies = [
            {actionType: 'restart_pod', actionParams: {namespace: 'shop', name: 'web-0'}, requestedBy: 'engine'},
            {actionType: 'scale_deployment', actionParams: {namespace: 'shop', name: 'web', replicas: 3}, requestedBy: 'café ☕ 😀'},
            {requestedBy: 'x', actionType: 'rollback_deployment', actionParams: {namespace: 'a', name: 'b', note: 'line\nbreak "quoted" \\ \u2028'}},
        ];
        const out = bodies.map(b => {
            const body = JSON.stringify(b);
            return {body, hex: crypto.createHmac('sha256', secret).update(body).digest('hex')};
        });
        process.stdout.write(JSON.stringify(out));
    "#;
    let Some(out) = node(script, SECRET.as_bytes()) else {
        return;
    };
    let signed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(signed.len(), 3);
    let v = legacy();
    for item in signed {
        let body = item["body"].as_str().unwrap().as_bytes();
        let hex = item["hex"].as_str().unwrap();
        let verified = v.verify(body, hex).unwrap();
        assert_eq!(
            verified.provenance(),
            &Provenance::Legacy {
                key_name: "engine".into()
            }
        );
        v.verify_mac(body, &format!("sha256={hex}")).unwrap();
        // The same JSON with other whitespace is other bytes: legacy mode refuses it.
        let mut spaced = body.to_vec();
        spaced.insert(1, b' ');
        assert!(matches!(
            v.verify_mac(&spaced, hex),
            Err(Rejection::BadMac { .. })
        ));
    }
}

/// Python's `hmac` over `json.dumps` bodies (Python's own separators and escaping).
#[test]
fn python_hmac_signatures_verify() {
    let script = r#"
import hashlib, hmac, json, sys
secret = sys.stdin.buffer.read()
bodies = [
    {"actionType": "restart_pod", "actionParams": {"namespace": "shop", "name": "web-0"}, "requestedBy": "engine"},
    {"actionType": "scale_deployment", "actionParams": {"namespace": "shop", "name": "web", "replicas": 3}, "requestedBy": "caf\u00e9 \U0001F600"},
]
out = []
for b in bodies:
    for ensure_ascii in (True, False):
        body = json.dumps(b, ensure_ascii=ensure_ascii).encode("utf-8")
        out.append({"body": body.decode("utf-8"), "hex": hmac.new(secret, body, hashlib.sha256).hexdigest()})
sys.stdout.write(json.dumps(out))
"#;
    let Some(out) = python(script, SECRET.as_bytes()) else {
        return;
    };
    let signed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(signed.len(), 4);
    let v = legacy();
    for item in signed {
        let body = item["body"].as_str().unwrap().as_bytes();
        let hex = item["hex"].as_str().unwrap();
        let verified = v.verify(body, hex).unwrap();
        assert!(verified.action()["actionType"].is_string());
        assert!(matches!(
            v.verify_mac(
                body,
                &hex.replace(&hex[..1], if &hex[..1] == "0" { "1" } else { "0" })
            ),
            Err(Rejection::BadMac { .. })
        ));
    }
}

/// And the other way: Node verifies what we sign, with `crypto.timingSafeEqual`.
#[test]
fn node_verifies_our_legacy_signatures() {
    let v = legacy();
    let bodies = [
        r#"{"actionType":"restart_pod","actionParams":{"namespace":"shop","name":"web-0"}}"#,
        "{\"requestedBy\":\"d\u{e9}j\u{e0} vu \u{1f600}\"}",
    ];
    let items: Vec<serde_json::Value> = bodies
        .iter()
        .map(|b| json!({"body": b, "hex": v.sign_hex(b.as_bytes())}))
        .collect();
    let script = format!(
        r#"
        const crypto = require('crypto');
        const items = JSON.parse(require('fs').readFileSync(0, 'utf8'));
        const ok = items.map(({{body, hex}}) => {{
            const want = crypto.createHmac('sha256', {secret:?}).update(body).digest();
            return crypto.timingSafeEqual(want, Buffer.from(hex, 'hex'));
        }});
        process.stdout.write(JSON.stringify(ok));
    "#,
        secret = SECRET
    );
    let Some(out) = node(&script, serde_json::to_string(&items).unwrap().as_bytes()) else {
        return;
    };
    assert_eq!(out, "[true,true]");
}

/// A version-1 envelope produced entirely by Node (its own JSON.stringify, key sorting and
/// HMAC, pretty-printed with its own key order) verifies here; one changed character does
/// not. This pins the documented MAC input: prefix + RFC 8785 JSON without `mac`.
#[test]
fn envelope_signed_by_node_verifies() {
    let secret = [0x5a_u8; 32];
    let now = 1_750_000_000_u64;
    let script = format!(
        r#"
        const crypto = require('crypto');
        // RFC 8785 for objects/arrays/strings/safe integers: JSON.stringify with sorted keys.
        const jcs = v => Array.isArray(v) ? '[' + v.map(jcs).join(',') + ']'
            : (v !== null && typeof v === 'object')
                ? '{{' + Object.keys(v).sort().map(k => JSON.stringify(k) + ':' + jcs(v[k])).join(',') + '}}'
                : JSON.stringify(v);
        const env = {{
            v: 1, kid: 'node-2024', alg: 'HS256', iat: {now}, exp: {now} + 300,
            nonce: crypto.randomBytes(16).toString('base64url'),
            action: {{type: 'scale_deployment', namespace: 'shop', name: 'web',
                      params: {{replicas: 4}}, requested_by: 'n\u00f6de \ud83d\ude00'}},
        }};
        const key = Buffer.alloc(32, 0x5a);
        env.mac = crypto.createHmac('sha256', key)
            .update('kubesafe.envelope.v1\n').update(jcs(env)).digest('base64url');
        process.stdout.write(JSON.stringify(env, null, 2));
    "#
    );
    let Some(out) = node(&script, b"") else {
        return;
    };
    let mut keys = KeyRing::new();
    keys.insert_verify_only("node-2024", Secret::new(secret.to_vec()).unwrap())
        .unwrap();
    let verifier = Verifier::new(keys, InMemoryReplayStore::default());
    let envelope = Envelope::parse(out.as_bytes(), &Limits::default()).unwrap();
    let verified = verifier
        .verify_as_at::<ActionRequest>(envelope.clone(), now + 10)
        .unwrap();
    assert_eq!(verified.action().action_type(), ActionType::ScaleDeployment);
    assert_eq!(
        verified.action().requested_by(),
        Some("n\u{f6}de \u{1f600}")
    );
    assert_eq!(verified.kid(), "node-2024");

    let tampered = out.replace("\"replicas\": 4", "\"replicas\": 5");
    assert_ne!(tampered, out);
    let envelope = Envelope::parse(tampered.as_bytes(), &Limits::default()).unwrap();
    assert!(matches!(
        Verifier::new(verifier.keys().clone(), InMemoryReplayStore::default())
            .verify_at(envelope, now + 10),
        Err(Rejection::BadMac { .. })
    ));
}

/// The MAC input we produce is the one a Node implementation computes from our envelope.
#[test]
fn node_verifies_our_envelopes() {
    let mut ring = KeyRing::new();
    ring.insert_active("k1", Secret::new(vec![0x33; 32]).unwrap())
        .unwrap();
    let env = ring
        .sign_at(
            &json!({"type": "restart_pod", "namespace": "shop", "name": "web-0",
                    "requested_by": "\u{e9}\u{1f600}\u{fb33}\u{7f}\n"}),
            1_700_000_000,
            Duration::from_secs(60),
            Nonce::random().unwrap(),
        )
        .unwrap();
    let script = r#"
        const crypto = require('crypto');
        const jcs = v => Array.isArray(v) ? '[' + v.map(jcs).join(',') + ']'
            : (v !== null && typeof v === 'object')
                ? '{' + Object.keys(v).sort().map(k => JSON.stringify(k) + ':' + jcs(v[k])).join(',') + '}'
                : JSON.stringify(v);
        const text = require('fs').readFileSync(0, 'utf8');
        const env = JSON.parse(text);
        const mac = env.mac; delete env.mac;
        const want = crypto.createHmac('sha256', Buffer.alloc(32, 0x33))
            .update('kubesafe.envelope.v1\n').update(jcs(env)).digest();
        env.mac = mac;
        process.stdout.write(JSON.stringify({
            mac_ok: crypto.timingSafeEqual(want, Buffer.from(mac, 'base64url')),
            canonical_ok: jcs(env) === text,
        }));
    "#;
    let Some(out) = node(script, env.to_json().as_bytes()) else {
        return;
    };
    assert_eq!(out, r#"{"mac_ok":true,"canonical_ok":true}"#);
}
