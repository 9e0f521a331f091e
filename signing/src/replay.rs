//! Replay protection: remember each `(kid, nonce)` until its envelope can no longer verify.
//!
//! The [`ReplayStore`] trait is what the [`crate::Verifier`] calls; implement it over a
//! shared store (Redis `SET key 1 NX EXAT expires_at`, a PostgreSQL table with a unique
//! key, ...) when several verifier processes must share one replay window. The one thing an
//! implementation must guarantee is that [`ReplayStore::check_and_record`] is **atomic**:
//! two concurrent calls with the same key never both succeed.
//!
//! The verifier calls the store only after the MAC and the time window have been checked, so
//! only authentic, currently valid envelopes occupy it: an attacker cannot fill it with
//! forgeries.
//!
//! # When the clock goes back
//!
//! A store forgets a nonce once its envelope has expired. If the system clock is then
//! stepped back (an NTP correction, a VM restored from a snapshot), that envelope looks
//! valid again and its nonce is gone. [`InMemoryReplayStore`] therefore remembers the
//! latest time at which it forgot anything (its *horizon*) and refuses every envelope whose
//! window ends at or before it with [`ReplayError::BeforeHorizon`] (the verifier reports it
//! as [`crate::Rejection::Expired`]). A shared store should do the same, or keep entries
//! well past their expiry.
//!
//! # When the in-memory store is full
//!
//! [`InMemoryReplayStore`] holds at most `capacity` live entries. When it is full it
//! **refuses** new envelopes with [`ReplayError::Full`] (→ `RETRY_LATER` with a
//! `Retry-After` of the time until the oldest entry expires) rather than evicting a live
//! entry: evicting a nonce whose envelope is still valid would let that envelope be replayed.
//! The trade-off is availability: a signer that issues more than `capacity` envelopes per
//! envelope lifetime is throttled. Size `capacity` above (peak envelopes per second) ×
//! (max lifetime + skew); each entry costs roughly 100 bytes plus the nonce.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

/// Why the replay check refused an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// This `(kid, nonce)` was already accepted and its envelope is still valid.
    #[error("nonce already used")]
    Replayed,
    /// The store cannot take another entry before one expires.
    #[error("replay cache is full; retry in {retry_after_secs} s")]
    Full {
        /// Seconds until the oldest entry expires.
        retry_after_secs: u64,
    },
    /// The envelope's replay window ends at or before a time the store has already
    /// passed, so its nonce may have been forgotten: the clock went back (an NTP step, a
    /// VM restored from a snapshot). Refused rather than risk accepting a replay.
    #[error(
        "nonces valid until {expires_at} may already be forgotten: this store has seen time {horizon} (did the clock go back?)"
    )]
    BeforeHorizon {
        /// End of the envelope's replay window (`exp + skew`, Unix seconds).
        expires_at: u64,
        /// The latest time at which the store forgot expired nonces.
        horizon: u64,
    },
    /// A shared store could not be reached (fail closed).
    #[error("replay store unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
}

/// Records nonces; see the [module docs](self).
pub trait ReplayStore: Send + Sync {
    /// Atomically: if `(kid, nonce)` is recorded and unexpired at `now`, return
    /// [`ReplayError::Replayed`]; otherwise record it until `expires_at` (Unix seconds,
    /// exclusive) and return `Ok(())`.
    ///
    /// # Errors
    /// [`ReplayError`].
    fn check_and_record(
        &self,
        kid: &str,
        nonce: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), ReplayError>;
}

impl<T: ReplayStore + ?Sized> ReplayStore for Arc<T> {
    fn check_and_record(
        &self,
        kid: &str,
        nonce: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        (**self).check_and_record(kid, nonce, expires_at, now)
    }
}

impl<T: ReplayStore + ?Sized> ReplayStore for &T {
    fn check_and_record(
        &self,
        kid: &str,
        nonce: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        (**self).check_and_record(kid, nonce, expires_at, now)
    }
}

/// A bounded in-process replay store with expiry (see the [module docs](self) for what
/// happens when it is full).
///
/// Entries are 128-bit fingerprints of `(kid, nonce)` — two SipHash-1-3 values under
/// per-store random keys — rather than the strings, so a lookup touches one cache line and
/// an insert allocates nothing. Two different nonces share a fingerprint with probability
/// about n²/2¹²⁹ for n live entries; the only effect would be refusing an authentic envelope
/// as a replay, never accepting one.
#[derive(Debug)]
pub struct InMemoryReplayStore {
    capacity: usize,
    keys: (RandomState, RandomState),
    inner: Mutex<Inner>,
}

/// The fingerprints are already uniformly distributed: hash them by taking 64 of their bits.
#[derive(Debug, Default, Clone, Copy)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; fold anything else in for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        // Truncation intended: the low half of a random 128-bit value.
        #[allow(clippy::cast_possible_truncation)]
        {
            self.0 = n as u64;
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// fingerprint → expires_at.
    live: HashMap<u128, u64, BuildHasherDefault<Prehashed>>,
    /// expires_at → fingerprints, for purging in expiry order (one bucket per second).
    by_expiry: BTreeMap<u64, Vec<u128>>,
    /// The latest `now` a purge ran at: entries expiring at or before it may be gone.
    horizon: u64,
}

impl Inner {
    fn purge(&mut self, now: u64) {
        self.horizon = self.horizon.max(now);
        while let Some(bucket) = self.by_expiry.first_entry() {
            if *bucket.key() > now {
                break;
            }
            let (expires_at, keys) = bucket.remove_entry();
            for key in keys {
                if self.live.get(&key) == Some(&expires_at) {
                    self.live.remove(&key);
                }
            }
        }
    }
}

/// The default capacity of [`InMemoryReplayStore::default`].
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

impl Default for InMemoryReplayStore {
    fn default() -> Self {
        InMemoryReplayStore::new(DEFAULT_REPLAY_CAPACITY)
    }
}

impl InMemoryReplayStore {
    /// A store holding at most `capacity` live entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        InMemoryReplayStore {
            capacity: capacity.max(1),
            keys: (RandomState::new(), RandomState::new()),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Number of entries held (some may have expired but not yet been purged).
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation below leaves the state consistent, so a poisoned lock (a panic in
        // another thread while holding it) is still safe to use.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ReplayStore for InMemoryReplayStore {
    fn check_and_record(
        &self,
        kid: &str,
        nonce: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        let fingerprint = {
            let half = |state: &RandomState| {
                let mut h = state.build_hasher();
                h.write(kid.as_bytes());
                h.write_u8(0xff); // not UTF-8: separates kid from nonce unambiguously
                h.write(nonce.as_bytes());
                h.finish()
            };
            (u128::from(half(&self.keys.0)) << 64) | u128::from(half(&self.keys.1))
        };
        let mut inner = self.lock();
        if let Some(&until) = inner.live.get(&fingerprint)
            && until > now
        {
            return Err(ReplayError::Replayed);
        }
        if expires_at <= now {
            // Already expired: nothing to remember (the verifier rejects these earlier).
            return Ok(());
        }
        if expires_at <= inner.horizon {
            return Err(ReplayError::BeforeHorizon {
                expires_at,
                horizon: inner.horizon,
            });
        }
        inner.purge(now);
        if inner.live.len() >= self.capacity {
            let oldest = inner.by_expiry.keys().next().copied().unwrap_or(now + 1);
            return Err(ReplayError::Full {
                retry_after_secs: oldest.saturating_sub(now).max(1),
            });
        }
        inner.live.insert(fingerprint, expires_at);
        inner
            .by_expiry
            .entry(expires_at)
            .or_default()
            .push(fingerprint);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_inside_window_is_refused_and_allowed_after_expiry() {
        let store = InMemoryReplayStore::new(10);
        assert_eq!(store.check_and_record("k", "n1", 100, 50), Ok(()));
        assert_eq!(
            store.check_and_record("k", "n1", 100, 99),
            Err(ReplayError::Replayed)
        );
        // Same nonce under another kid is a different entry.
        assert_eq!(store.check_and_record("k2", "n1", 100, 99), Ok(()));
        // Expired entries are forgotten.
        assert_eq!(store.check_and_record("k", "n1", 200, 100), Ok(()));
        assert_eq!(
            store.check_and_record("k", "n1", 200, 150),
            Err(ReplayError::Replayed)
        );
    }

    #[test]
    fn a_clock_stepped_back_cannot_revive_a_forgotten_nonce() {
        let store = InMemoryReplayStore::new(10);
        assert_eq!(store.check_and_record("k", "n1", 100, 50), Ok(()));
        // Time passes beyond the envelope's window; a later insert purges its nonce.
        assert_eq!(store.check_and_record("k", "n2", 400, 300), Ok(()));
        assert_eq!(store.len(), 1, "n1 was forgotten");
        // The clock steps back to 60: n1's envelope looks valid again, but it cannot be
        // proven fresh.
        assert_eq!(
            store.check_and_record("k", "n1", 100, 60),
            Err(ReplayError::BeforeHorizon {
                expires_at: 100,
                horizon: 300
            })
        );
        // Envelopes whose window reaches past the horizon are still judged by their nonce.
        assert_eq!(store.check_and_record("k", "n3", 350, 60), Ok(()));
        assert_eq!(
            store.check_and_record("k", "n2", 400, 60),
            Err(ReplayError::Replayed)
        );
    }

    #[test]
    fn full_store_refuses_rather_than_evicting_live_entries() {
        let store = InMemoryReplayStore::new(2);
        store.check_and_record("k", "a", 100, 0).unwrap();
        store.check_and_record("k", "b", 120, 0).unwrap();
        assert_eq!(
            store.check_and_record("k", "c", 130, 10),
            Err(ReplayError::Full {
                retry_after_secs: 90
            })
        );
        // Both live entries are still remembered.
        assert_eq!(
            store.check_and_record("k", "a", 100, 10),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            store.check_and_record("k", "b", 120, 10),
            Err(ReplayError::Replayed)
        );
        // Once "a" expires there is room again.
        assert_eq!(store.check_and_record("k", "c", 130, 100), Ok(()));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn concurrent_duplicates_are_accepted_exactly_once() {
        let store = Arc::new(InMemoryReplayStore::new(1000));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|i| {
                            store
                                .check_and_record("k", &format!("nonce-{i}"), 1000, 1)
                                .is_ok()
                        })
                        .count()
                })
            })
            .collect();
        let accepted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(accepted, 100);
    }
}
