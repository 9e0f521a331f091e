//! Admission of verified actions: namespace allow-list, optional required policy decision,
//! idempotency key, per-action-type rate limits — each behind a trait or a small type, each
//! failure a canonical [`ErrorCode`].
//!
//! [`Admission::admit`] takes a [`Verified`]`<`[`ActionRequest`]`>` (so nothing unverified can
//! be admitted) and runs, in order:
//!
//! | step | failure | code |
//! |------|---------|------|
//! | namespace allowed ([`NamespacePolicy`]) | not in the list | `FORBIDDEN` |
//! | policy decision, if one is required ([`PolicyDecision`]) | block / human approval / budget / invariant / unavailable | `POLICY_BLOCKED` / `HITL_REQUIRED` / `BUDGET_EXCEEDED` / `INVARIANT_VIOLATION` / `RETRY_LATER` |
//! | idempotency key reserved ([`IdempotencyStore`]) | same key, different action | `CONFLICT` |
//! | rate limit of the action type ([`RateLimits`]) | used up (the reservation is released) | `RATE_LIMIT_EXCEEDED` + `Retry-After` |
//!
//! A request whose idempotency key was already admitted for the same action is answered with
//! [`Decision::Duplicate`] — not executed again, and not counted against the rate limit.
//! Verification failures map onto codes through `From<`[`Rejection`]`>` (see the table on
//! [`Rejection`]).
//!
//! # Rate limits: what "N per window" means here
//!
//! Limits use `governor`'s GCRA. A [`RateLimit`] of `N` per window `W` comes in two modes:
//!
//! * [`RateLimitMode::Strict`] (the default, [`RateLimit::per_window`]): burst `N`, one new
//!   permit every `W`. **Guarantee:** for every instant `t`, at most `N` actions are
//!   admitted in the half-open interval `[t, t + W)` — the reading of
//!   `RATE_LIMIT_RESTART_MAX=5` per 300 s that an operator relies on. (Proof: GCRA admits the
//!   k-th of a run of admissions at `t_k` only if `t_k - t_1 >= (k - N)·W`, so an
//!   (N+1)-th admission is at least `W` after the first.) A request arriving at least `W`
//!   after the previous admission is always admitted. The price: after a full burst the
//!   sustained rate is one per `W`, not `N` per `W`.
//! * [`RateLimitMode::Average`] ([`RateLimit::average`]): burst `N`, one new permit every
//!   `W / N`. The long-run rate is `N / W`, but an interval of length `L` may see up to
//!   `N + ⌊L·N / W⌋` admissions — up to `2N - 1` in one window `W`. Use it only where a
//!   rate, not a hard cap, is wanted.
//!
//! The property tests in `tests/admission.rs` check both statements against a fake clock.
//!
//! ```
//! use kubesafe_signing::admission::*;
//! use kubesafe_signing::action::ActionType;
//! use std::time::Duration;
//! let mut limits = RateLimits::new();
//! limits.set(ActionType::RestartPod, RateLimit::per_window(5, Duration::from_secs(300))?);
//! let admission = Admission::new(NamespaceAllowList::new(["shop"]), limits);
//! # let _ = admission;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::action::{ActionRequest, ActionType};
use crate::codes::ErrorCode;
use crate::envelope::{Envelope, MalformedError, unix_now};
use crate::jcs::Canonicalizer;
use crate::replay::ReplayStore;
use crate::verify::{Provenance, Rejection, Verified, Verifier};

/// A refused admission (or verification), as sent to the client.
///
/// Serialises as `{"code":"RATE_LIMIT_EXCEEDED","message":"…","retry_after_seconds":42}`
/// (`retry_after_seconds` and `field` only when set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
#[non_exhaustive]
pub struct AdmissionError {
    /// The canonical code.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
    /// Seconds after which retrying may succeed (the HTTP `Retry-After` value).
    #[serde(
        rename = "retry_after_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after_secs: Option<u64>,
    /// The field concerned, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl AdmissionError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AdmissionError {
            code,
            message: message.into(),
            retry_after_secs: None,
            field: None,
        }
    }

    /// Adds a `Retry-After` value.
    #[must_use]
    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after_secs = secs;
        self
    }

    /// Names the field concerned.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The `Retry-After` header (name, value), where it applies.
    pub fn retry_after_header(&self) -> Option<(&'static str, String)> {
        self.retry_after_secs
            .map(|s| ("Retry-After", s.to_string()))
    }
}

impl From<Rejection> for AdmissionError {
    fn from(rejection: Rejection) -> Self {
        let field = match &rejection {
            Rejection::Malformed(m) => malformed_field(m),
            _ => None,
        };
        let mut e = AdmissionError::new(rejection.code(), rejection.to_string())
            .with_retry_after(rejection.retry_after_secs());
        e.field = field;
        e
    }
}

fn malformed_field(m: &MalformedError) -> Option<String> {
    match m {
        MalformedError::MissingField { field }
        | MalformedError::WrongType { field, .. }
        | MalformedError::InvalidField { field, .. } => Some((*field).to_owned()),
        MalformedError::UnsupportedVersion { .. } => Some("v".to_owned()),
        MalformedError::UnsupportedAlgorithm { .. } => Some("alg".to_owned()),
        MalformedError::UnknownField { field } => Some(field.clone()),
        MalformedError::Action(_) | MalformedError::ActionSchema { .. } => {
            Some("action".to_owned())
        }
        _ => None,
    }
}

/// Which namespaces actions may target.
pub trait NamespacePolicy: Send + Sync {
    /// Whether actions on objects in `namespace` are allowed.
    fn allows(&self, namespace: &str) -> bool;
}

/// A fixed set of allowed namespaces (exact names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceAllowList {
    allowed: BTreeSet<String>,
}

impl NamespaceAllowList {
    /// Allows exactly `namespaces`.
    pub fn new<I, S>(namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        NamespaceAllowList {
            allowed: namespaces.into_iter().map(Into::into).collect(),
        }
    }
}

impl NamespacePolicy for NamespaceAllowList {
    fn allows(&self, namespace: &str) -> bool {
        self.allowed.contains(namespace)
    }
}

/// What a policy engine decided about an action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyOutcome {
    /// Go ahead.
    Allow,
    /// Refused by policy → `POLICY_BLOCKED`.
    Block {
        /// Why.
        reason: String,
    },
    /// A human must approve first → `HITL_REQUIRED`.
    RequireHuman {
        /// Why.
        reason: String,
    },
    /// A change/disruption budget is used up → `BUDGET_EXCEEDED`.
    BudgetExceeded {
        /// Why.
        reason: String,
        /// When the budget frees up, if known.
        retry_after_secs: Option<u64>,
    },
    /// The action would break an invariant → `INVARIANT_VIOLATION`.
    InvariantViolation {
        /// Which invariant.
        reason: String,
    },
    /// The policy engine cannot decide now (fail closed) → `RETRY_LATER`.
    Unavailable {
        /// Why.
        reason: String,
        /// When to retry, if known.
        retry_after_secs: Option<u64>,
    },
}

/// A policy decision point consulted for every action when configured with
/// [`Admission::require_policy`].
pub trait PolicyDecision: Send + Sync {
    /// Decides about `request`, authenticated as `provenance`.
    fn decide(&self, request: &ActionRequest, provenance: &Provenance) -> PolicyOutcome;
}

impl<F> PolicyDecision for F
where
    F: Fn(&ActionRequest, &Provenance) -> PolicyOutcome + Send + Sync,
{
    fn decide(&self, request: &ActionRequest, provenance: &Provenance) -> PolicyOutcome {
        self(request, provenance)
    }
}

/// The result of reserving an idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reservation {
    /// First use of the key: it is now reserved for this action.
    New,
    /// The key was already used for the same action.
    Duplicate,
    /// The key was already used for a different action.
    Conflict,
}

/// Why an idempotency store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyError {
    /// The store is full until its oldest entry expires.
    #[error("idempotency store is full; retry in {retry_after_secs} s")]
    Full {
        /// Seconds until the oldest entry expires.
        retry_after_secs: u64,
    },
    /// A shared store is unreachable.
    #[error("idempotency store unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
}

/// Remembers idempotency keys with the fingerprint (SHA-256 of the canonical action) they
/// were first used for. Implementations must make [`IdempotencyStore::reserve`] atomic.
pub trait IdempotencyStore: Send + Sync {
    /// Atomically looks `key` up and, when unknown (or expired at `now`), records it with
    /// `fingerprint` until `expires_at` (Unix seconds).
    ///
    /// # Errors
    /// [`IdempotencyError`].
    fn reserve(
        &self,
        key: &str,
        fingerprint: &[u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<Reservation, IdempotencyError>;

    /// Forgets a reservation made by [`IdempotencyStore::reserve`] for an action that was
    /// then refused, so that the client may retry with the same key.
    fn release(&self, key: &str, fingerprint: &[u8; 32]);
}

/// A bounded in-process [`IdempotencyStore`]: at most `capacity` live keys (memory stays
/// proportional to it, released reservations included); when full it refuses new keys
/// ([`IdempotencyError::Full`]) rather than forgetting live ones.
#[derive(Debug)]
pub struct InMemoryIdempotencyStore {
    capacity: usize,
    inner: Mutex<IdemInner>,
}

#[derive(Debug, Default)]
struct IdemInner {
    live: HashMap<String, ([u8; 32], u64)>,
    by_expiry: BinaryHeap<Reverse<(u64, String)>>,
}

impl InMemoryIdempotencyStore {
    /// A store of at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        InMemoryIdempotencyStore {
            capacity: capacity.max(1),
            inner: Mutex::new(IdemInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdemInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for InMemoryIdempotencyStore {
    fn default() -> Self {
        InMemoryIdempotencyStore::new(100_000)
    }
}

impl IdempotencyStore for InMemoryIdempotencyStore {
    fn reserve(
        &self,
        key: &str,
        fingerprint: &[u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<Reservation, IdempotencyError> {
        let mut inner = self.lock();
        if let Some((fp, until)) = inner.live.get(key)
            && *until > now
        {
            return Ok(if fp == fingerprint {
                Reservation::Duplicate
            } else {
                Reservation::Conflict
            });
        }
        while let Some(Reverse((t, _))) = inner.by_expiry.peek() {
            if *t > now {
                break;
            }
            if let Some(Reverse((t, k))) = inner.by_expiry.pop()
                && inner.live.get(&k).is_some_and(|(_, until)| *until == t)
            {
                inner.live.remove(&k);
            }
        }
        if inner.live.len() >= self.capacity {
            let oldest = inner.by_expiry.peek().map_or(now + 1, |Reverse((t, _))| *t);
            return Err(IdempotencyError::Full {
                retry_after_secs: oldest.saturating_sub(now).max(1),
            });
        }
        inner
            .live
            .insert(key.to_owned(), (*fingerprint, expires_at));
        inner.by_expiry.push(Reverse((expires_at, key.to_owned())));
        Ok(Reservation::New)
    }

    fn release(&self, key: &str, fingerprint: &[u8; 32]) {
        let mut inner = self.lock();
        if inner.live.get(key).is_some_and(|(fp, _)| fp == fingerprint) {
            inner.live.remove(key);
        }
        // The expiry entry of a released key stays in the heap until its time comes; a
        // client retrying with one key would pile them up. Drop the stale ones once they
        // outnumber the capacity (amortised O(1) per release).
        if inner.by_expiry.len() > 2 * self.capacity {
            let IdemInner { live, by_expiry } = &mut *inner;
            by_expiry.retain(|Reverse((t, k))| live.get(k).is_some_and(|(_, until)| until == t));
        }
    }
}

/// How a [`RateLimit`] spreads its permits (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitMode {
    /// Never more than `N` in any interval of length `W`.
    Strict,
    /// `N` per `W` on average, bursts up to `2N - 1` within one `W`.
    Average,
}

/// Invalid admission configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A rate limit of zero actions or over a zero/too short window.
    #[error("invalid rate limit: {0}")]
    RateLimit(String),
}

/// `max` actions per `window`, in a [`RateLimitMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    max: NonZeroU32,
    window: Duration,
    mode: RateLimitMode,
}

impl RateLimit {
    /// At most `max` actions in any interval of length `window` ([`RateLimitMode::Strict`]).
    ///
    /// # Errors
    /// [`ConfigError::RateLimit`] for `max == 0` or a window under one millisecond.
    pub fn per_window(max: u32, window: Duration) -> Result<Self, ConfigError> {
        Self::build(max, window, RateLimitMode::Strict)
    }

    /// `max` actions per `window` on average ([`RateLimitMode::Average`]).
    ///
    /// # Errors
    /// As [`RateLimit::per_window`].
    pub fn average(max: u32, window: Duration) -> Result<Self, ConfigError> {
        Self::build(max, window, RateLimitMode::Average)
    }

    fn build(max: u32, window: Duration, mode: RateLimitMode) -> Result<Self, ConfigError> {
        let max = NonZeroU32::new(max)
            .ok_or_else(|| ConfigError::RateLimit("max must be at least 1".to_owned()))?;
        if window < Duration::from_millis(1) {
            return Err(ConfigError::RateLimit(
                "window must be at least 1 ms".to_owned(),
            ));
        }
        Ok(RateLimit { max, window, mode })
    }

    /// The maximum count.
    pub fn max(&self) -> u32 {
        self.max.get()
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The mode.
    pub fn mode(&self) -> RateLimitMode {
        self.mode
    }

    /// The `governor` quota implementing this limit.
    pub fn quota(&self) -> Quota {
        let period = match self.mode {
            RateLimitMode::Strict => self.window,
            RateLimitMode::Average => self.window / self.max.get(),
        };
        // `build` keeps the window >= 1 ms, so the period is at least 1 ms / 2^32 > 0 ns
        // only for Average; clamp to 1 ns to stay valid in every case.
        let period = period.max(Duration::from_nanos(1));
        Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(self.max)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            RateLimitMode::Strict => "at most",
            RateLimitMode::Average => "on average",
        };
        write!(f, "{mode} {} per {:?}", self.max, self.window)
    }
}

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The default limit of every action type: at most 5 per 300 s (strict).
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    max: match NonZeroU32::new(5) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    },
    window: Duration::from_secs(300),
    mode: RateLimitMode::Strict,
};

/// One rate limiter per action type, all on clock `C` (a `governor` clock; tests use
/// `governor::clock::FakeRelativeClock`). Every type starts at [`DEFAULT_RATE_LIMIT`].
pub struct RateLimits<C: Clock = DefaultClock> {
    clock: C,
    limiters: BTreeMap<ActionType, (RateLimit, Limiter<C>)>,
}

impl<C: Clock> fmt::Debug for RateLimits<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.limiters.iter().map(|(k, (l, _))| (k, l.to_string())))
            .finish()
    }
}

impl Default for RateLimits<DefaultClock> {
    fn default() -> Self {
        RateLimits::new()
    }
}

impl RateLimits<DefaultClock> {
    /// Limits on the system's monotonic clock.
    pub fn new() -> Self {
        RateLimits::with_clock(DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// Limits on `clock`.
    pub fn with_clock(clock: C) -> Self {
        let mut limits = RateLimits {
            clock,
            limiters: BTreeMap::new(),
        };
        for ty in ActionType::ALL {
            limits.set(ty, DEFAULT_RATE_LIMIT);
        }
        limits
    }

    /// Sets (and resets) the limit of `action_type`.
    pub fn set(&mut self, action_type: ActionType, limit: RateLimit) {
        let limiter = RateLimiter::direct_with_clock(limit.quota(), self.clock.clone());
        self.limiters.insert(action_type, (limit, limiter));
    }
}

impl<C: Clock> RateLimits<C> {
    /// The limit of `action_type`.
    pub fn limit(&self, action_type: ActionType) -> Option<RateLimit> {
        self.limiters.get(&action_type).map(|(l, _)| *l)
    }

    /// Takes one permit for `action_type`, or returns the whole seconds to wait (rounded
    /// up, at least 1) until one is available.
    ///
    /// # Errors
    /// `Err(retry_after_secs)` when the limit is used up.
    pub fn check(&self, action_type: ActionType) -> Result<(), u64> {
        let Some((_, limiter)) = self.limiters.get(&action_type) else {
            // Unreachable: every type gets a limiter in `with_clock`. Fail closed.
            return Err(1);
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            secs.max(1)
        })
    }
}

/// What [`Admission::admit`] decided.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Decision {
    /// The action may be executed.
    Admitted(Admitted),
    /// An action with the same idempotency key and content was already admitted: do not
    /// execute it again.
    Duplicate {
        /// The idempotency key.
        idempotency_key: String,
    },
}

/// An action that passed verification and admission; the executor's input.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    verified: Verified<ActionRequest>,
}

impl Admitted {
    /// The action.
    pub fn request(&self) -> &ActionRequest {
        self.verified.action()
    }

    /// How it was authenticated.
    pub fn provenance(&self) -> &Provenance {
        self.verified.provenance()
    }

    /// The verified action.
    pub fn into_verified(self) -> Verified<ActionRequest> {
        self.verified
    }
}

/// The admission checks; see the [module docs](self).
pub struct Admission<C: Clock = DefaultClock> {
    namespaces: Box<dyn NamespacePolicy>,
    rate_limits: RateLimits<C>,
    policy: Option<Box<dyn PolicyDecision>>,
    idempotency: Box<dyn IdempotencyStore>,
    idempotency_ttl: u64,
}

impl<C: Clock> fmt::Debug for Admission<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("rate_limits", &self.rate_limits)
            .field("policy_required", &self.policy.is_some())
            .field("idempotency_ttl_secs", &self.idempotency_ttl)
            .finish_non_exhaustive()
    }
}

/// Default time an idempotency key is remembered.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

impl<C: Clock> Admission<C> {
    /// Admission with a namespace policy and rate limits, no required policy decision, and
    /// an in-memory idempotency store remembering keys for [`DEFAULT_IDEMPOTENCY_TTL`].
    pub fn new(namespaces: impl NamespacePolicy + 'static, rate_limits: RateLimits<C>) -> Self {
        Admission {
            namespaces: Box::new(namespaces),
            rate_limits,
            policy: None,
            idempotency: Box::new(InMemoryIdempotencyStore::default()),
            idempotency_ttl: DEFAULT_IDEMPOTENCY_TTL.as_secs(),
        }
    }

    /// Requires `policy` to allow every action.
    #[must_use]
    pub fn require_policy(mut self, policy: impl PolicyDecision + 'static) -> Self {
        self.policy = Some(Box::new(policy));
        self
    }

    /// Uses `store` for idempotency keys, remembering them for `ttl`.
    #[must_use]
    pub fn with_idempotency_store(
        mut self,
        store: impl IdempotencyStore + 'static,
        ttl: Duration,
    ) -> Self {
        self.idempotency = Box::new(store);
        self.idempotency_ttl = ttl.as_secs().max(1);
        self
    }

    /// The rate limits.
    pub fn rate_limits(&self) -> &RateLimits<C> {
        &self.rate_limits
    }

    /// Verifies `envelope` with `verifier` as an [`ActionRequest`] and admits it now.
    ///
    /// # Errors
    /// [`AdmissionError`] with the code of the verification or admission failure.
    pub fn admit_envelope<S: ReplayStore>(
        &self,
        verifier: &Verifier<S>,
        envelope: Envelope,
    ) -> Result<Decision, AdmissionError> {
        let verified = verifier.verify_as::<ActionRequest>(envelope)?;
        self.admit(verified)
    }

    /// Admits `verified` now.
    ///
    /// # Errors
    /// [`AdmissionError`].
    pub fn admit(&self, verified: Verified<ActionRequest>) -> Result<Decision, AdmissionError> {
        self.admit_at(verified, unix_now())
    }

    /// Admits `verified`, with `now` (Unix seconds) as the idempotency store's clock.
    ///
    /// # Errors
    /// [`AdmissionError`].
    pub fn admit_at(
        &self,
        verified: Verified<ActionRequest>,
        now: u64,
    ) -> Result<Decision, AdmissionError> {
        let request = verified.action();
        if !self.namespaces.allows(request.namespace()) {
            return Err(AdmissionError::new(
                ErrorCode::Forbidden,
                format!(
                    "namespace {:?} is not in the allow-list",
                    request.namespace()
                ),
            )
            .with_field("namespace"));
        }
        if let Some(policy) = &self.policy {
            policy_result(policy.decide(request, verified.provenance()))?;
        }
        let reserved = match request.idempotency_key() {
            None => None,
            Some(key) => {
                let fingerprint = fingerprint(request)?;
                let expires_at = now.saturating_add(self.idempotency_ttl);
                match self.idempotency.reserve(key, &fingerprint, expires_at, now) {
                    Ok(Reservation::New) => Some((key, fingerprint)),
                    Ok(Reservation::Duplicate) => {
                        tracing::info!(key, "duplicate idempotency key; not admitted again");
                        return Ok(Decision::Duplicate {
                            idempotency_key: key.to_owned(),
                        });
                    }
                    Ok(Reservation::Conflict) => {
                        return Err(AdmissionError::new(
                            ErrorCode::Conflict,
                            format!(
                                "idempotency key {key:?} was already used for a different action"
                            ),
                        )
                        .with_field("idempotency_key"));
                    }
                    Err(e) => {
                        let retry = match &e {
                            IdempotencyError::Full { retry_after_secs } => Some(*retry_after_secs),
                            _ => None,
                        };
                        return Err(AdmissionError::new(ErrorCode::RetryLater, e.to_string())
                            .with_retry_after(retry));
                    }
                }
            }
        };
        if let Err(retry_after) = self.rate_limits.check(request.action_type()) {
            if let Some((key, fp)) = &reserved {
                self.idempotency.release(key, fp);
            }
            let limit = self
                .rate_limits
                .limit(request.action_type())
                .map_or_else(String::new, |l| format!(" ({l})"));
            return Err(AdmissionError::new(
                ErrorCode::RateLimitExceeded,
                format!("rate limit of {}{limit} reached", request.action_type()),
            )
            .with_retry_after(Some(retry_after)));
        }
        Ok(Decision::Admitted(Admitted { verified }))
    }
}

fn policy_result(outcome: PolicyOutcome) -> Result<(), AdmissionError> {
    match outcome {
        PolicyOutcome::Allow => Ok(()),
        PolicyOutcome::Block { reason } => {
            Err(AdmissionError::new(ErrorCode::PolicyBlocked, reason))
        }
        PolicyOutcome::RequireHuman { reason } => {
            Err(AdmissionError::new(ErrorCode::HitlRequired, reason))
        }
        PolicyOutcome::BudgetExceeded {
            reason,
            retry_after_secs,
        } => Err(AdmissionError::new(ErrorCode::BudgetExceeded, reason)
            .with_retry_after(retry_after_secs)),
        PolicyOutcome::InvariantViolation { reason } => {
            Err(AdmissionError::new(ErrorCode::InvariantViolation, reason))
        }
        PolicyOutcome::Unavailable {
            reason,
            retry_after_secs,
        } => Err(AdmissionError::new(
            ErrorCode::RetryLater,
            format!("policy decision unavailable: {reason}"),
        )
        .with_retry_after(retry_after_secs)),
    }
}

/// SHA-256 of the request's canonical JSON.
fn fingerprint(request: &ActionRequest) -> Result<[u8; 32], AdmissionError> {
    let value = serde_json::to_value(request)
        .map_err(|e| AdmissionError::new(ErrorCode::SchemaValidationFailed, e.to_string()))?;
    let bytes = Canonicalizer::strict().to_vec(&value).map_err(|e| {
        AdmissionError::new(ErrorCode::SchemaValidationFailed, e.to_string()).with_field("action")
    })?;
    Ok(Sha256::digest(&bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_reservations_do_not_pile_up() {
        // A client retrying on RATE_LIMIT_EXCEEDED with one idempotency key reserves and
        // releases it on every attempt: memory must stay bounded by the capacity.
        let store = InMemoryIdempotencyStore::new(4);
        let fp = [7u8; 32];
        for now in 0..10_000 {
            assert_eq!(
                store.reserve("retry-me", &fp, now + 86_400, now),
                Ok(Reservation::New)
            );
            store.release("retry-me", &fp);
        }
        let inner = store.lock();
        assert!(inner.live.is_empty());
        assert!(
            inner.by_expiry.len() <= 2 * 4 + 1,
            "{}",
            inner.by_expiry.len()
        );
        drop(inner);
        // Live reservations are unaffected by the clean-up.
        let other = [8u8; 32];
        assert_eq!(store.reserve("a", &fp, 100, 0), Ok(Reservation::New));
        for _ in 0..20 {
            store.reserve("b", &other, 100, 0).unwrap();
            store.release("b", &other);
        }
        assert_eq!(store.reserve("a", &fp, 100, 1), Ok(Reservation::Duplicate));
        assert_eq!(
            store.reserve("a", &other, 100, 1),
            Ok(Reservation::Conflict)
        );
    }
}
