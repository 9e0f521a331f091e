//! Opt-in compatibility with existing clients: a hex HMAC-SHA256 over the exact body bytes.
//!
//! This is what clients of the common design send — they sign the bytes of
//! `JSON.stringify({actionType, actionParams, requestedBy})` and send the hex digest — and
//! what GitHub sends in `X-Hub-Signature-256` (`sha256=<hex>`). Verification here:
//!
//! * hashes the **exact bytes received** (no re-serialisation, so key order and whitespace
//!   are whatever the client produced);
//! * accepts the signature as 64 hex digits (either case), optionally prefixed `sha256=`;
//!   anything shorter (a truncated tag) or longer is refused as malformed, never compared;
//! * compares in constant time (`hmac`'s `verify_slice`);
//! * checks the body size before hashing and parses the JSON strictly only after the MAC
//!   matched.
//!
//! **What it cannot do:** the legacy format has no expiry, nonce or key id, so a captured
//! request verifies forever. Use it only while migrating clients to envelopes, give it its
//! own secret (not one in an envelope [`crate::KeyRing`]), and keep its admission rate
//! limits tight.
//!
//! ```
//! use kubesafe_signing::legacy::LegacyVerifier;
//! use kubesafe_signing::LegacySecret;
//! // GitHub's documented example ("Validating webhook deliveries").
//! let secret = LegacySecret::new_allow_short(b"It's a Secret to Everybody".to_vec())?;
//! let legacy = LegacyVerifier::new("github", secret);
//! legacy.verify_mac(
//!     b"Hello, World!",
//!     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
//! )?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use hmac::Mac as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::envelope::MalformedError;
use crate::json::{self, Limits, ParseError};
use crate::keys::{HmacSha256, LegacySecret, decode_hex, keyed_hmac};
use crate::verify::{Provenance, Rejection, Verified, typed_action};

/// Verifies legacy hex signatures with one secret.
#[derive(Clone)]
pub struct LegacyVerifier {
    name: String,
    keyed: HmacSha256,
    limits: Limits,
    _secret: LegacySecret,
}

impl std::fmt::Debug for LegacyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyVerifier")
            .field("name", &self.name)
            .field("secret", &self._secret)
            .field("limits", &self.limits)
            .finish()
    }
}

impl LegacyVerifier {
    /// A verifier for `secret`; `name` identifies the key in [`Provenance::Legacy`] and logs.
    pub fn new(name: impl Into<String>, secret: LegacySecret) -> Self {
        LegacyVerifier {
            name: name.into(),
            keyed: keyed_hmac(secret.expose()),
            limits: Limits::default(),
            _secret: secret,
        }
    }

    /// Sets the body size and JSON depth limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The lower-case hex HMAC-SHA256 of `body` (what a legacy client sends).
    pub fn sign_hex(&self, body: &[u8]) -> String {
        let mut mac = self.keyed.clone();
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(64);
        for b in tag {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        }
        hex
    }

    /// Checks only the MAC of `body` against `signature` (`<hex>` or `sha256=<hex>`).
    ///
    /// # Errors
    /// [`Rejection::Malformed`] for an oversized body or a signature that is not 64 hex
    /// digits; [`Rejection::BadMac`] when it does not match.
    pub fn verify_mac(&self, body: &[u8], signature: &str) -> Result<(), Rejection> {
        if body.len() > self.limits.max_bytes() {
            return Err(Rejection::Malformed(MalformedError::Json(
                ParseError::TooLarge {
                    len: body.len(),
                    max: self.limits.max_bytes(),
                },
            )));
        }
        let hex = signature.strip_prefix("sha256=").unwrap_or(signature);
        let invalid = |reason: &str| {
            Rejection::Malformed(MalformedError::InvalidField {
                field: "signature",
                reason: reason.to_owned(),
            })
        };
        if hex.len() != 64 {
            return Err(invalid(
                "must be 64 hex digits (a full HMAC-SHA256), optionally prefixed `sha256=`",
            ));
        }
        let tag = decode_hex(hex.as_bytes()).ok_or_else(|| invalid("not hexadecimal"))?;
        let mut mac = self.keyed.clone();
        mac.update(body);
        mac.verify_slice(&tag).map_err(|_| {
            tracing::debug!(key = %self.name, "legacy signature mismatch");
            Rejection::BadMac {
                kid: self.name.clone(),
            }
        })
    }

    /// Checks the MAC, then parses `body` strictly as JSON.
    ///
    /// # Errors
    /// As [`LegacyVerifier::verify_mac`], then [`Rejection::Malformed`] for invalid JSON.
    pub fn verify(&self, body: &[u8], signature: &str) -> Result<Verified<Value>, Rejection> {
        self.verify_mac(body, signature)?;
        let value = json::parse(body, &self.limits).map_err(MalformedError::Json)?;
        Ok(Verified::new(
            value,
            Provenance::Legacy {
                key_name: self.name.clone(),
            },
        ))
    }

    /// Checks the MAC, then deserialises `body` into `T`.
    ///
    /// # Errors
    /// As [`LegacyVerifier::verify`], plus [`MalformedError::ActionSchema`].
    pub fn verify_as<T: DeserializeOwned>(
        &self,
        body: &[u8],
        signature: &str,
    ) -> Result<Verified<T>, Rejection> {
        let (value, provenance) = self.verify(body, signature)?.into_parts();
        Ok(Verified::new(typed_action(value)?, provenance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github() -> LegacyVerifier {
        LegacyVerifier::new(
            "github",
            LegacySecret::new_allow_short(b"It's a Secret to Everybody".to_vec()).unwrap(),
        )
    }

    const GITHUB_SIG: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_documented_example() {
        let v = github();
        assert_eq!(v.sign_hex(b"Hello, World!"), GITHUB_SIG);
        v.verify_mac(b"Hello, World!", GITHUB_SIG).unwrap();
        v.verify_mac(b"Hello, World!", &format!("sha256={GITHUB_SIG}"))
            .unwrap();
        v.verify_mac(b"Hello, World!", &GITHUB_SIG.to_uppercase())
            .unwrap();
        // Not JSON: the MAC verifies but `verify` refuses the body.
        assert!(matches!(
            v.verify(b"Hello, World!", GITHUB_SIG),
            Err(Rejection::Malformed(MalformedError::Json(_)))
        ));
    }

    #[test]
    fn wrong_truncated_or_garbled_signatures_are_refused() {
        let v = github();
        assert!(matches!(
            v.verify_mac(b"Hello, World?", GITHUB_SIG),
            Err(Rejection::BadMac { .. })
        ));
        for bad in [
            &GITHUB_SIG[..32],
            &GITHUB_SIG[..63],
            "",
            "sha256=",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ] {
            assert!(
                matches!(
                    v.verify_mac(b"Hello, World!", bad),
                    Err(Rejection::Malformed(MalformedError::InvalidField {
                        field: "signature",
                        ..
                    }))
                ),
                "{bad:?}"
            );
        }
        let garbled = format!("{}zz", &GITHUB_SIG[..62]);
        assert!(matches!(
            v.verify_mac(b"Hello, World!", &garbled),
            Err(Rejection::Malformed(_))
        ));
        let big = vec![b' '; Limits::default().max_bytes() + 1];
        assert!(matches!(
            v.verify_mac(&big, GITHUB_SIG),
            Err(Rejection::Malformed(MalformedError::Json(
                ParseError::TooLarge { .. }
            )))
        ));
    }
}
