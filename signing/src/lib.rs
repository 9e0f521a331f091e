//! `kubesafe-signing` — signed action envelopes and their admission, part of
//! [kubesafe](https://github.com/kubesafe/kubesafe).
//!
//! A remediation executor must only carry out actions (`restart_pod`, `scale_deployment`,
//! `rollback_deployment`) that its engine really sent, once, recently, and within limits.
//! This crate provides:
//!
//! * [`Envelope`]: `{v, kid, alg, iat, exp, nonce, action, mac}` — HMAC-SHA256 over the
//!   RFC 8785 canonical JSON ([`jcs`]) of everything but the MAC, so key order and
//!   whitespace never matter; JSON and compact token wire forms; strict parsing with typed
//!   [`MalformedError`]s naming the field.
//! * [`KeyRing`]: key id → [`Secret`] (≥ 32 bytes, zeroized on drop, redacted in `Debug`),
//!   one active signing key plus verify-only keys for rotation; loading from files or
//!   environment variables.
//! * [`Verifier`]: a typed [`Verified<T>`] or a typed [`Rejection`] (bad MAC in constant time,
//!   unknown kid, expired, not yet valid with configurable skew, replayed nonce, malformed),
//!   with a [`ReplayStore`] trait and a bounded [`InMemoryReplayStore`].
//! * [`legacy`]: opt-in verification of hex HMACs over the raw body, as the common
//!   `JSON.stringify` design and GitHub's `X-Hub-Signature-256` produce.
//! * [`action`]: typed [`ActionRequest`]s, and [`admission`]: namespace allow-list,
//!   per-action-type `governor` rate limits, an optional required policy decision,
//!   idempotency keys, and the canonical [`ErrorCode`]s with `Retry-After`.
//!
//! ```
//! use kubesafe_signing::action::ActionRequest;
//! use kubesafe_signing::admission::{Admission, Decision, NamespaceAllowList, RateLimits};
//! use kubesafe_signing::{ErrorCode, InMemoryReplayStore, KeyRing, Limits, Secret, Verifier};
//! use std::time::Duration;
//!
//! // The engine signs ...
//! let secret = Secret::new(b"0123456789abcdef0123456789abcdef".to_vec())?;
//! let mut signer = KeyRing::new();
//! signer.insert_active("2024-06", secret.clone())?;
//! let action = serde_json::json!({
//!     "type": "scale_deployment", "namespace": "shop", "name": "web",
//!     "params": {"replicas": 3}
//! });
//! let wire = signer.sign(&action, Duration::from_secs(300))?.to_json();
//!
//! // ... the executor verifies and admits.
//! let mut keys = KeyRing::new();
//! keys.insert_verify_only("2024-06", secret)?;
//! let verifier = Verifier::new(keys, InMemoryReplayStore::default());
//! let admission = Admission::new(NamespaceAllowList::new(["shop"]), RateLimits::new());
//! let envelope = kubesafe_signing::Envelope::parse(wire.as_bytes(), &Limits::default())?;
//! match admission.admit_envelope(&verifier, envelope.clone()) {
//!     Ok(Decision::Admitted(admitted)) => assert_eq!(admitted.request().name(), "web"),
//!     other => panic!("{other:?}"),
//! }
//! // Sending the same envelope again is a replay.
//! let err = admission.admit_envelope(&verifier, envelope).unwrap_err();
//! assert_eq!(err.code, ErrorCode::Conflict);
//! assert_eq!(serde_json::to_value(&err)?["code"], "CONFLICT");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod action;
pub mod admission;
mod codes;
pub mod envelope;
pub mod jcs;
pub mod json;
pub mod keys;
pub mod legacy;
pub mod replay;
pub mod verify;

pub use action::ActionRequest;
pub use codes::ErrorCode;
pub use envelope::{Algorithm, Envelope, MalformedError, Nonce, SignError};
pub use json::{Limits, ParseError};
pub use keys::{KeyError, KeyRing, LegacySecret, Secret};
pub use replay::{InMemoryReplayStore, ReplayError, ReplayStore};
pub use verify::{Provenance, Rejection, Verified, Verifier};
