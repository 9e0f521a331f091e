//! Gate policy: deadlines, the settle window and the polling back-off.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::PolicyError;

/// How the gate waits and decides.
///
/// Defaults: 120 s deadline for the change and again for the rollback; a
/// preflight that requires the component healthy (within 10 s) before
/// anything is written; the restart witness required; a settle window of 10 s
/// of continuous health *and* 3 consecutive healthy probes; polling from
/// 20 ms backing off with jitter to 100 ms (a component that becomes healthy
/// is seen within ~100 ms); 5 s per probe; 60 s for the verifier.
///
/// ```
/// use kubesafe_health_gate::{BackoffPolicy, GatePolicy};
/// use std::time::Duration;
///
/// let policy = GatePolicy::default()
///     .deadline(Duration::from_secs(60))
///     .settle(Duration::from_secs(5), 3)
///     .backoff(BackoffPolicy::new(
///         Duration::from_millis(25),
///         1.5,
///         Duration::from_millis(250),
///         0.2,
///     )?);
/// # let _ = policy;
/// # Ok::<(), kubesafe_health_gate::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GatePolicy {
    /// Longest wait, from the write, for the restart and the settled health.
    #[serde(with = "crate::clock::duration_ms", rename = "deadline_ms")]
    pub deadline: Duration,
    /// Longest wait, from the rollback write, for the old configuration to
    /// come back healthy.
    #[serde(with = "crate::clock::duration_ms", rename = "rollback_deadline_ms")]
    pub rollback_deadline: Duration,
    /// `Some(t)`: before writing anything, the component must be healthy
    /// within `t`, else the transaction fails with nothing changed. `None`
    /// skips the preflight.
    #[serde(with = "crate::clock::option_duration_ms", rename = "preflight_ms")]
    pub preflight: Option<Duration>,
    /// Whether health only counts once the witness has seen the restart
    /// (default true). Off, the old process answering `ok` right after the
    /// write would pass the gate, and after a rollback the process running
    /// the rejected configuration would pass the rollback's gate.
    pub require_restart_witness: bool,
    /// Continuous health required before success.
    #[serde(with = "crate::clock::duration_ms", rename = "settle_ms")]
    pub settle_duration: Duration,
    /// Consecutive healthy probes required before success (at least 1).
    pub settle_successes: u32,
    /// Polling intervals.
    pub backoff: BackoffPolicy,
    /// Longest single probe attempt (capped by the time left).
    #[serde(with = "crate::clock::duration_ms", rename = "probe_timeout_ms")]
    pub probe_timeout: Duration,
    /// Longest run of the verifier.
    #[serde(with = "crate::clock::duration_ms", rename = "verify_timeout_ms")]
    pub verify_timeout: Duration,
}

impl Default for GatePolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(120),
            rollback_deadline: Duration::from_secs(120),
            preflight: Some(Duration::from_secs(10)),
            require_restart_witness: true,
            settle_duration: Duration::from_secs(10),
            settle_successes: 3,
            backoff: BackoffPolicy::default(),
            probe_timeout: Duration::from_secs(5),
            verify_timeout: Duration::from_secs(60),
        }
    }
}

/// Longest duration a policy accepts for any of its settings: a gate that
/// waits longer than a day is a configuration error (and `Instant`
/// arithmetic with `Duration::MAX` would overflow).
pub const MAX_POLICY_DURATION: Duration = Duration::from_secs(24 * 3600);

impl GatePolicy {
    /// Checks that the gate can work with this policy: every duration
    /// positive and at most [`MAX_POLICY_DURATION`], the deadlines longer
    /// than the settle window (or the gate could never succeed), the
    /// back-off's invariants. [`Transaction::run`](crate::Transaction::run)
    /// calls it first and ends [`Outcome::Failed`](crate::Outcome::Failed),
    /// nothing written, when it fails.
    ///
    /// # Errors
    /// [`PolicyError`] naming the setting at fault.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let range = |setting: &'static str, value: Duration| {
            if value.is_zero() || value > MAX_POLICY_DURATION {
                Err(PolicyError::OutOfRange {
                    setting,
                    value,
                    bounds: "positive and at most 24h",
                })
            } else {
                Ok(())
            }
        };
        range("deadline", self.deadline)?;
        range("rollback deadline", self.rollback_deadline)?;
        if let Some(p) = self.preflight {
            range("preflight", p)?;
        }
        range("probe timeout", self.probe_timeout)?;
        range("verify timeout", self.verify_timeout)?;
        if self.settle_duration > MAX_POLICY_DURATION {
            return Err(PolicyError::OutOfRange {
                setting: "settle window",
                value: self.settle_duration,
                bounds: "at most 24h",
            });
        }
        for (setting, deadline) in [
            ("deadline", self.deadline),
            ("rollback deadline", self.rollback_deadline),
        ] {
            if deadline <= self.settle_duration {
                return Err(PolicyError::DeadlineShorterThanSettle {
                    setting,
                    deadline,
                    settle: self.settle_duration,
                });
            }
        }
        let b = self.backoff;
        BackoffPolicy::new(b.initial, b.factor, b.max, b.jitter).map(|_| ())
    }

    /// Sets the deadline of the change (and of the rollback, unless set
    /// separately afterwards).
    #[must_use]
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self.rollback_deadline = d;
        self
    }

    /// Sets the rollback deadline.
    #[must_use]
    pub fn rollback_deadline(mut self, d: Duration) -> Self {
        self.rollback_deadline = d;
        self
    }

    /// Sets the preflight (`None`: skip it).
    #[must_use]
    pub fn preflight(mut self, d: Option<Duration>) -> Self {
        self.preflight = d;
        self
    }

    /// Sets whether the restart witness is required.
    #[must_use]
    pub fn require_restart_witness(mut self, on: bool) -> Self {
        self.require_restart_witness = on;
        self
    }

    /// Sets the settle window: continuous health for `duration` and
    /// `successes` consecutive healthy probes (at least 1). The smallest
    /// window is `(Duration::ZERO, 1)`.
    #[must_use]
    pub fn settle(mut self, duration: Duration, successes: u32) -> Self {
        self.settle_duration = duration;
        self.settle_successes = successes.max(1);
        self
    }

    /// Sets the polling back-off.
    #[must_use]
    pub fn backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the timeout of a single probe.
    #[must_use]
    pub fn probe_timeout(mut self, d: Duration) -> Self {
        self.probe_timeout = d;
        self
    }

    /// Sets the verifier's timeout.
    #[must_use]
    pub fn verify_timeout(mut self, d: Duration) -> Self {
        self.verify_timeout = d;
        self
    }
}

/// Polling intervals: start at `initial`, multiply by `factor` (less a random
/// jitter) after each poll, up to `max`; once at the cap, stay within
/// `[max·(1−jitter), max]`. Any observed change of state resets to `initial`
/// (see [`Backoff::reset`]).
///
/// Invariants, checked by [`BackoffPolicy::new`]: `0 < initial ≤ max`,
/// `factor ≥ 1`, `0 ≤ jitter < 1` and `factor·(1−jitter) ≥ 1`, so the
/// intervals never shrink before the cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBackoff")]
pub struct BackoffPolicy {
    #[serde(with = "crate::clock::duration_ms", rename = "initial_ms")]
    initial: Duration,
    factor: f64,
    #[serde(with = "crate::clock::duration_ms", rename = "max_ms")]
    max: Duration,
    jitter: f64,
}

/// The serialized form of a [`BackoffPolicy`], checked by
/// [`BackoffPolicy::new`] on the way in.
#[derive(Deserialize)]
struct RawBackoff {
    #[serde(with = "crate::clock::duration_ms", rename = "initial_ms")]
    initial: Duration,
    factor: f64,
    #[serde(with = "crate::clock::duration_ms", rename = "max_ms")]
    max: Duration,
    jitter: f64,
}

impl TryFrom<RawBackoff> for BackoffPolicy {
    type Error = PolicyError;

    fn try_from(r: RawBackoff) -> Result<Self, PolicyError> {
        Self::new(r.initial, r.factor, r.max, r.jitter)
    }
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(20),
            factor: 1.5,
            max: Duration::from_millis(100),
            jitter: 0.2,
        }
    }
}

impl BackoffPolicy {
    /// A back-off policy.
    ///
    /// # Errors
    /// [`PolicyError::Backoff`] when the invariants above do not hold.
    pub fn new(
        initial: Duration,
        factor: f64,
        max: Duration,
        jitter: f64,
    ) -> Result<Self, PolicyError> {
        let bad = |why: &str| {
            Err(PolicyError::Backoff(format!(
                "initial {initial:?}, factor {factor}, max {max:?}, jitter {jitter}: {why}"
            )))
        };
        if initial.is_zero() {
            return bad("initial interval must be positive");
        }
        if max < initial {
            return bad("max must be at least initial");
        }
        if !factor.is_finite() || factor < 1.0 {
            return bad("factor must be at least 1");
        }
        if !jitter.is_finite() || !(0.0..1.0).contains(&jitter) {
            return bad("jitter must be in [0, 1)");
        }
        if factor * (1.0 - jitter) < 1.0 {
            return bad("factor·(1−jitter) must be at least 1, or intervals could shrink");
        }
        Ok(Self {
            initial,
            factor,
            max,
            jitter,
        })
    }

    /// A fixed interval, no back-off, no jitter (what a plain polling script
    /// does; the benchmark's peer).
    ///
    /// # Errors
    /// When `interval` is zero.
    pub fn fixed(interval: Duration) -> Result<Self, PolicyError> {
        Self::new(interval, 1.0, interval, 0.0)
    }

    /// The first interval.
    #[must_use]
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The cap.
    #[must_use]
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The growth factor.
    #[must_use]
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The jitter fraction.
    #[must_use]
    pub fn jitter(&self) -> f64 {
        self.jitter
    }
}

/// The sequence of polling intervals of one gate; see [`BackoffPolicy`].
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    last: Option<Duration>,
    capped: bool,
    rng: SplitMix64,
}

impl Backoff {
    /// A schedule with a random seed.
    #[must_use]
    pub fn new(policy: BackoffPolicy) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        Self::with_seed(policy, h.finish())
    }

    /// A reproducible schedule.
    #[must_use]
    pub fn with_seed(policy: BackoffPolicy, seed: u64) -> Self {
        Self {
            policy,
            last: None,
            capped: false,
            rng: SplitMix64(seed),
        }
    }

    /// Starts over from the initial interval (the gate does this whenever
    /// what it observes changes, so a transition is followed closely).
    pub fn reset(&mut self) {
        self.last = None;
        self.capped = false;
    }

    /// Whether the schedule has reached its cap.
    #[must_use]
    pub fn is_capped(&self) -> bool {
        self.capped
    }

    /// The next interval.
    pub fn next_interval(&mut self) -> Duration {
        let p = self.policy;
        let shrink = 1.0 - p.jitter * self.rng.next_unit();
        let next = if self.capped {
            p.max.mul_f64(shrink)
        } else {
            match self.last {
                None => p.initial,
                Some(last) => {
                    let grown = last.mul_f64(p.factor * shrink);
                    // Rounding must never make the interval shrink.
                    if grown >= p.max {
                        self.capped = true;
                        p.max.mul_f64(shrink)
                    } else {
                        grown.max(last)
                    }
                }
            }
        };
        let next = next
            .min(p.max)
            .max(Duration::from_micros(100).min(p.initial));
        if next >= p.max {
            self.capped = true;
        }
        self.last = Some(next);
        next
    }

    /// How long to sleep now: the next interval, but never past `deadline`
    /// and never past `wake_at` if given (e.g. the end of the settle window).
    pub fn sleep_for(
        &mut self,
        now: Instant,
        deadline: Instant,
        wake_at: Option<Instant>,
    ) -> Duration {
        let mut d = self
            .next_interval()
            .min(deadline.saturating_duration_since(now));
        if let Some(w) = wake_at {
            d = d.min(w.saturating_duration_since(now));
        }
        d
    }
}

/// A tiny PRNG for jitter (no dependency; quality is irrelevant here).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_schedule_reaches_the_cap_quickly() {
        let mut b = Backoff::with_seed(BackoffPolicy::default(), 7);
        let first: Vec<Duration> = (0..8).map(|_| b.next_interval()).collect();
        assert_eq!(first[0], Duration::from_millis(20));
        assert!(b.is_capped(), "{first:?}");
        assert!(first.iter().all(|d| *d <= Duration::from_millis(100)));
        b.reset();
        assert_eq!(b.next_interval(), Duration::from_millis(20));
    }

    #[test]
    fn invalid_policies_are_rejected() {
        let ms = Duration::from_millis;
        assert!(BackoffPolicy::new(ms(0), 2.0, ms(10), 0.1).is_err());
        assert!(BackoffPolicy::new(ms(10), 2.0, ms(5), 0.1).is_err());
        assert!(BackoffPolicy::new(ms(10), 0.5, ms(50), 0.1).is_err());
        assert!(BackoffPolicy::new(ms(10), 1.2, ms(50), 0.5).is_err());
        assert!(BackoffPolicy::new(ms(10), 2.0, ms(50), f64::NAN).is_err());
        assert!(BackoffPolicy::fixed(ms(2000)).is_ok());
    }

    #[test]
    fn fixed_policy_is_constant() {
        let mut b = Backoff::with_seed(BackoffPolicy::fixed(Duration::from_secs(2)).unwrap(), 1);
        for _ in 0..5 {
            assert_eq!(b.next_interval(), Duration::from_secs(2));
        }
    }

    #[test]
    fn deserialized_backoff_keeps_its_invariants() {
        // A zero initial interval would make the gate spin; serde must not
        // bypass what `BackoffPolicy::new` checks.
        let bad = r#"{"initial_ms":0.0,"factor":1.5,"max_ms":100.0,"jitter":0.2}"#;
        let err = serde_json::from_str::<BackoffPolicy>(bad).unwrap_err();
        assert!(err.to_string().contains("initial"), "{err}");
        let shrinking = r#"{"initial_ms":10.0,"factor":0.5,"max_ms":100.0,"jitter":0.2}"#;
        assert!(serde_json::from_str::<BackoffPolicy>(shrinking).is_err());
        let good = serde_json::to_string(&BackoffPolicy::default()).unwrap();
        assert_eq!(
            serde_json::from_str::<BackoffPolicy>(&good).unwrap(),
            BackoffPolicy::default()
        );
    }

    #[test]
    fn validate_names_the_setting_at_fault() {
        assert_eq!(GatePolicy::default().validate(), Ok(()));
        let e = GatePolicy::default()
            .deadline(Duration::from_secs(5))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("deadline"), "{e}");
        assert!(e.to_string().contains("settle"), "{e}");
        let e = GatePolicy::default()
            .rollback_deadline(Duration::from_secs(10))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("rollback deadline"), "{e}");
        let e = GatePolicy::default()
            .probe_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("probe timeout"), "{e}");
        let e = GatePolicy::default()
            .preflight(Some(Duration::ZERO))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("preflight"), "{e}");
        let e = GatePolicy::default()
            .verify_timeout(Duration::from_secs(25 * 3600))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("verify timeout"), "{e}");
    }

    fn policy_strategy() -> impl Strategy<Value = BackoffPolicy> {
        (1_u64..500, 1.0_f64..4.0, 0_u64..5_000, 0.0_f64..0.9).prop_filter_map(
            "valid policy",
            |(initial, factor, extra, jitter)| {
                let initial = Duration::from_millis(initial);
                let max = initial + Duration::from_millis(extra);
                // Clamp the jitter into the valid range for this factor.
                let jitter = jitter.min(1.0 - 1.0 / factor).max(0.0) * 0.999;
                BackoffPolicy::new(initial, factor, max, jitter).ok()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 256 } else { 2048 }))]

        /// Intervals never exceed the cap, never shrink before the cap, stay
        /// in the jitter band at the cap.
        #[test]
        fn intervals_are_monotone_until_the_cap(policy in policy_strategy(), seed in any::<u64>(), resets in proptest::collection::vec(0_usize..40, 0..3)) {
            let mut b = Backoff::with_seed(policy, seed);
            let mut prev: Option<Duration> = None;
            for i in 0..60 {
                if resets.contains(&i) {
                    b.reset();
                    prev = None;
                }
                let was_capped = b.is_capped();
                let d = b.next_interval();
                prop_assert!(d <= policy.max(), "{d:?} > cap {:?}", policy.max());
                prop_assert!(!d.is_zero());
                if prev.is_none() {
                    prop_assert_eq!(d, policy.initial());
                }
                if was_capped {
                    let floor = policy.max().mul_f64(1.0 - policy.jitter());
                    prop_assert!(d + Duration::from_nanos(1) >= floor, "{d:?} below band {floor:?}");
                } else if let (Some(p), false) = (prev, b.is_capped()) {
                    prop_assert!(d >= p, "shrank before the cap: {p:?} -> {d:?}");
                }
                prev = Some(d);
            }
        }

        /// Sleeping by `sleep_for` on a simulated clock never passes the
        /// deadline, and reaches it.
        #[test]
        fn sleeps_never_pass_the_deadline(policy in policy_strategy(), seed in any::<u64>(), deadline_ms in 0_u64..20_000, wake_ms in proptest::option::of(0_u64..20_000)) {
            let mut b = Backoff::with_seed(policy, seed);
            let start = Instant::now();
            let deadline = start + Duration::from_millis(deadline_ms);
            let wake = wake_ms.map(|w| start + Duration::from_millis(w));
            let mut now = start;
            let mut steps = 0_u32;
            while now < deadline {
                let wake_at = wake.filter(|w| *w > now);
                let s = b.sleep_for(now, deadline, wake_at);
                if let Some(w) = wake_at {
                    prop_assert!(now + s <= w);
                }
                now += s;
                prop_assert!(now <= deadline);
                steps += 1;
                prop_assert!(steps < 1_000_000);
            }
            prop_assert_eq!(now, deadline.max(start));
        }
    }
}
