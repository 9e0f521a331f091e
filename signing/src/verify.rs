//! Verification: an [`Envelope`] in, a [`Verified`] action or a typed [`Rejection`] out.
//!
//! The checks run in this order, and each failure has its own [`Rejection`]:
//!
//! 1. structure (parsing) → [`Rejection::Malformed`];
//! 2. the key id is in the ring → [`Rejection::UnknownKid`];
//! 3. the MAC, compared in constant time (`hmac`'s `verify_slice`) → [`Rejection::BadMac`];
//! 4. the time window, `iat - skew <= now < exp + skew` → [`Rejection::NotYetValid`] /
//!    [`Rejection::Expired`], and `exp - iat <= max_ttl` → [`Rejection::LifetimeTooLong`];
//! 5. the nonce, recorded until `exp + skew` → [`Rejection::Replayed`] (or
//!    [`Rejection::ReplayUnavailable`] when the store is full or down: fail closed);
//! 6. for [`Verifier::verify_as`], the action's type → [`Rejection::Malformed`]
//!    ([`MalformedError::ActionSchema`]).
//!
//! The MAC is checked before anything the envelope says is trusted, and before the nonce is
//! recorded, so forged envelopes cannot fill the replay store. (A typed action that fails
//! step 6 has consumed its nonce: it was authentic, and retrying it is a replay.)

use std::time::Duration;

use hmac::Mac as _;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::codes::ErrorCode;
use crate::envelope::{Envelope, MalformedError, unix_now};
use crate::json::Limits;
use crate::keys::KeyRing;
use crate::replay::{InMemoryReplayStore, ReplayError, ReplayStore};

/// Default clock-skew allowance of a [`Verifier`].
pub const DEFAULT_SKEW: Duration = Duration::from_secs(30);

/// Default longest envelope lifetime (`exp - iat`) a [`Verifier`] accepts.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(3600);

/// How an action was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provenance {
    /// A version-1 envelope.
    Envelope {
        /// Key id that verified the MAC.
        kid: String,
        /// The nonce (now recorded as used).
        nonce: String,
        /// Issued at, Unix seconds.
        iat: u64,
        /// Expires at, Unix seconds.
        exp: u64,
    },
    /// The legacy hex HMAC over the raw body (no expiry, no nonce: no replay protection).
    Legacy {
        /// The name the legacy key was configured under.
        key_name: String,
    },
}

/// An action whose authenticity has been checked. Only this crate's verifiers create it,
/// so a function taking a `Verified<T>` cannot be handed an unchecked action.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified<T> {
    action: T,
    provenance: Provenance,
}

impl<T> Verified<T> {
    pub(crate) fn new(action: T, provenance: Provenance) -> Self {
        Verified { action, provenance }
    }

    /// The action.
    pub fn action(&self) -> &T {
        &self.action
    }

    /// How it was authenticated.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// The key id (envelope) or the legacy key's name.
    pub fn kid(&self) -> &str {
        match &self.provenance {
            Provenance::Envelope { kid, .. } => kid,
            Provenance::Legacy { key_name } => key_name,
        }
    }

    /// The action, giving up the proof of verification.
    pub fn into_action(self) -> T {
        self.action
    }

    /// Splits into the action and its provenance.
    pub fn into_parts(self) -> (T, Provenance) {
        (self.action, self.provenance)
    }

    /// Converts the action, keeping the proof (for conversions that cannot fail).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Verified<U> {
        Verified {
            action: f(self.action),
            provenance: self.provenance,
        }
    }
}

/// Why an envelope (or legacy body) was not accepted. [`Rejection::code`] maps each to its
/// canonical error code:
///
/// | rejection | code |
/// |-----------|------|
/// | `Malformed` | `SCHEMA_VALIDATION_FAILED` |
/// | `UnknownKid`, `BadMac`, `Expired`, `NotYetValid`, `LifetimeTooLong` | `UNAUTHORIZED` |
/// | `Replayed` | `CONFLICT` |
/// | `ReplayUnavailable` | `RETRY_LATER` (with `Retry-After` when known) |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The input is not a well-formed envelope, or the action does not fit its type.
    #[error(transparent)]
    Malformed(#[from] MalformedError),
    /// The key id is not in the key ring (never added, or removed after rotation).
    #[error("unknown key id {kid:?}")]
    UnknownKid {
        /// The key id.
        kid: String,
    },
    /// The MAC does not match: wrong key, or the envelope was altered.
    #[error("MAC does not match for key id {kid:?}")]
    BadMac {
        /// The key id.
        kid: String,
    },
    /// `now >= exp + skew`.
    #[error("envelope expired at {exp} (now {now}, skew {skew_secs} s)")]
    Expired {
        /// The envelope's `exp`.
        exp: u64,
        /// The verifier's time.
        now: u64,
        /// The skew allowance.
        skew_secs: u64,
    },
    /// `now < iat - skew`.
    #[error("envelope is not valid before {iat} (now {now}, skew {skew_secs} s)")]
    NotYetValid {
        /// The envelope's `iat`.
        iat: u64,
        /// The verifier's time.
        now: u64,
        /// The skew allowance.
        skew_secs: u64,
    },
    /// `exp - iat` exceeds the verifier's maximum lifetime.
    #[error("envelope lifetime {ttl_secs} s exceeds the maximum of {max_ttl_secs} s")]
    LifetimeTooLong {
        /// `exp - iat`.
        ttl_secs: u64,
        /// The verifier's maximum.
        max_ttl_secs: u64,
    },
    /// The nonce was already used by an accepted envelope that is still valid.
    #[error("nonce {nonce:?} of key id {kid:?} was already used")]
    Replayed {
        /// The key id.
        kid: String,
        /// The nonce.
        nonce: String,
    },
    /// The replay store cannot record the nonce (full, or a shared store is down).
    #[error("cannot record the nonce: {error}")]
    ReplayUnavailable {
        /// What the store said.
        error: ReplayError,
    },
}

impl Rejection {
    /// The canonical error code (see the table on [`Rejection`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            Rejection::Malformed(_) => ErrorCode::SchemaValidationFailed,
            Rejection::UnknownKid { .. }
            | Rejection::BadMac { .. }
            | Rejection::Expired { .. }
            | Rejection::NotYetValid { .. }
            | Rejection::LifetimeTooLong { .. } => ErrorCode::Unauthorized,
            Rejection::Replayed { .. } => ErrorCode::Conflict,
            Rejection::ReplayUnavailable { .. } => ErrorCode::RetryLater,
        }
    }

    /// Seconds after which a retry may succeed, where that is known.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Rejection::ReplayUnavailable {
                error: ReplayError::Full { retry_after_secs },
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// Verifies envelopes against a [`KeyRing`] and a [`ReplayStore`].
///
/// ```
/// use kubesafe_signing::{InMemoryReplayStore, KeyRing, Rejection, Secret, Verifier};
/// use std::time::Duration;
/// let mut ring = KeyRing::new();
/// ring.insert_active("k1", Secret::new(vec![1; 32])?)?;
/// let envelope = ring.sign(&serde_json::json!({"type": "restart_pod"}), Duration::from_secs(60))?;
/// let verifier = Verifier::new(ring, InMemoryReplayStore::default());
/// let verified = verifier.verify(envelope.clone())?;
/// assert_eq!(verified.action()["type"], "restart_pod");
/// // The same envelope again is a replay.
/// assert!(matches!(verifier.verify(envelope), Err(Rejection::Replayed { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Verifier<S = InMemoryReplayStore> {
    keys: KeyRing,
    replay: S,
    skew: u64,
    max_ttl: u64,
    limits: Limits,
}

impl<S: ReplayStore> Verifier<S> {
    /// A verifier with [`DEFAULT_SKEW`], [`DEFAULT_MAX_TTL`] and default [`Limits`].
    pub fn new(keys: KeyRing, replay: S) -> Self {
        Verifier {
            keys,
            replay,
            skew: DEFAULT_SKEW.as_secs(),
            max_ttl: DEFAULT_MAX_TTL.as_secs(),
            limits: Limits::default(),
        }
    }

    /// Sets the clock-skew allowance (whole seconds).
    #[must_use]
    pub fn with_skew(mut self, skew: Duration) -> Self {
        self.skew = skew.as_secs();
        self
    }

    /// Sets the longest accepted lifetime `exp - iat` (whole seconds). It also bounds how
    /// long the replay store must remember a nonce.
    #[must_use]
    pub fn with_max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl.as_secs();
        self
    }

    /// Sets the size and depth limits for [`Verifier::verify_bytes`].
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The key ring, to rotate keys in place.
    pub fn keys_mut(&mut self) -> &mut KeyRing {
        &mut self.keys
    }

    /// The replay store.
    pub fn replay_store(&self) -> &S {
        &self.replay
    }

    /// The parsing limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parses either wire form and verifies it now.
    ///
    /// # Errors
    /// [`Rejection`].
    pub fn verify_bytes(&self, input: &[u8]) -> Result<Verified<Value>, Rejection> {
        let envelope = Envelope::parse(input, &self.limits)?;
        self.verify(envelope)
    }

    /// Verifies `envelope` at the current system time.
    ///
    /// # Errors
    /// [`Rejection`].
    pub fn verify(&self, envelope: Envelope) -> Result<Verified<Value>, Rejection> {
        self.verify_at(envelope, unix_now())
    }

    /// Verifies `envelope` at `now` (Unix seconds).
    ///
    /// # Errors
    /// [`Rejection`].
    pub fn verify_at(&self, envelope: Envelope, now: u64) -> Result<Verified<Value>, Rejection> {
        self.check(&envelope, now)?;
        let (iat, exp) = (envelope.iat(), envelope.exp());
        let (kid, nonce, action) = envelope.into_parts();
        Ok(Verified::new(
            action,
            Provenance::Envelope {
                kid,
                nonce,
                iat,
                exp,
            },
        ))
    }

    /// Verifies `envelope` now and deserialises its action into `T`.
    ///
    /// # Errors
    /// [`Rejection`]; [`MalformedError::ActionSchema`] when the action does not fit `T`.
    pub fn verify_as<T: DeserializeOwned>(
        &self,
        envelope: Envelope,
    ) -> Result<Verified<T>, Rejection> {
        self.verify_as_at(envelope, unix_now())
    }

    /// Verifies `envelope` at `now` and deserialises its action into `T`.
    ///
    /// # Errors
    /// As [`Verifier::verify_as`].
    pub fn verify_as_at<T: DeserializeOwned>(
        &self,
        envelope: Envelope,
        now: u64,
    ) -> Result<Verified<T>, Rejection> {
        let (value, provenance) = self.verify_at(envelope, now)?.into_parts();
        Ok(Verified::new(typed_action(value)?, provenance))
    }

    fn check(&self, envelope: &Envelope, now: u64) -> Result<(), Rejection> {
        let kid = envelope.kid();
        let key = self.keys.get(kid).ok_or_else(|| Rejection::UnknownKid {
            kid: kid.to_owned(),
        })?;
        let mac = envelope.compute_mac(key)?;
        if mac.verify_slice(envelope.mac()).is_err() {
            tracing::debug!(kid, "envelope MAC mismatch");
            return Err(Rejection::BadMac {
                kid: kid.to_owned(),
            });
        }
        let (iat, exp) = (envelope.iat(), envelope.exp());
        if now.saturating_add(self.skew) < iat {
            return Err(Rejection::NotYetValid {
                iat,
                now,
                skew_secs: self.skew,
            });
        }
        let valid_until = exp.saturating_add(self.skew);
        if now >= valid_until {
            return Err(Rejection::Expired {
                exp,
                now,
                skew_secs: self.skew,
            });
        }
        let ttl = exp - iat.min(exp);
        if ttl > self.max_ttl {
            return Err(Rejection::LifetimeTooLong {
                ttl_secs: ttl,
                max_ttl_secs: self.max_ttl,
            });
        }
        match self
            .replay
            .check_and_record(kid, envelope.nonce(), valid_until, now)
        {
            Ok(()) => {}
            Err(ReplayError::Replayed) => {
                tracing::info!(kid, nonce = envelope.nonce(), "replayed envelope refused");
                return Err(Rejection::Replayed {
                    kid: kid.to_owned(),
                    nonce: envelope.nonce().to_owned(),
                });
            }
            Err(ReplayError::BeforeHorizon { horizon, .. }) => {
                tracing::warn!(
                    kid,
                    nonce = envelope.nonce(),
                    now,
                    horizon,
                    "envelope expired before a time the replay store has already seen; \
                     the clock went back"
                );
                return Err(Rejection::Expired {
                    exp,
                    now: horizon,
                    skew_secs: self.skew,
                });
            }
            Err(error) => {
                tracing::warn!(%error, "replay store refused to record a nonce");
                return Err(Rejection::ReplayUnavailable { error });
            }
        }
        Ok(())
    }
}

pub(crate) fn typed_action<T: DeserializeOwned>(action: Value) -> Result<T, Rejection> {
    serde_json::from_value(action).map_err(|e| {
        Rejection::Malformed(MalformedError::ActionSchema {
            message: e.to_string(),
        })
    })
}
