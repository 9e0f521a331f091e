//! Admission: the rate-limit guarantees (property tests on `governor`'s fake clock), and
//! every admission outcome with its canonical code.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::time::Duration;

use governor::clock::FakeRelativeClock;
use kubesafe_signing::action::{ActionRequest, ActionType};
use kubesafe_signing::admission::{
    Admission, AdmissionError, Decision, InMemoryIdempotencyStore, NamespaceAllowList,
    PolicyOutcome, RateLimit, RateLimits,
};
use kubesafe_signing::{
    Envelope, ErrorCode, InMemoryReplayStore, KeyRing, Nonce, Provenance, Secret, Verified,
    Verifier,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Feeds requests at the given gaps through a limiter; returns the admission times (ns).
fn run(limit: RateLimit, gaps_ms: &[u64]) -> (Vec<u64>, Vec<(u64, u64)>) {
    let clock = FakeRelativeClock::default();
    let mut limits = RateLimits::with_clock(clock.clone());
    limits.set(ActionType::RestartPod, limit);
    let mut now_ns = 0u64;
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for gap in gaps_ms {
        clock.advance(Duration::from_millis(*gap));
        now_ns += gap * 1_000_000;
        match limits.check(ActionType::RestartPod) {
            Ok(()) => admitted.push(now_ns),
            Err(retry_after) => refused.push((now_ns, retry_after)),
        }
    }
    (admitted, refused)
}

/// The largest number of admissions inside any half-open interval [t, t + window).
fn max_in_any_window(admitted: &[u64], window_ns: u64) -> usize {
    // It suffices to look at intervals starting at an admission.
    admitted
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            admitted[i..]
                .iter()
                .take_while(|&&u| u < t + window_ns)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn gaps() -> impl Strategy<Value = Vec<u64>> {
    // Bursts (0 ms), sub-second, seconds and minutes: 5 per 300 s needs all of them.
    prop::collection::vec(
        prop_oneof![
            Just(0u64),
            1u64..1_000,
            1_000u64..60_000,
            60_000u64..400_000
        ],
        1..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Strict mode: never more than N admissions in any interval of length W, and a request
    /// at least W after the previous admission is always admitted.
    #[test]
    fn strict_mode_never_admits_more_than_n_in_any_window(n in 1u32..8, window_s in 1u64..600, gaps in gaps()) {
        let window = Duration::from_secs(window_s);
        let (admitted, refused) = run(RateLimit::per_window(n, window).unwrap(), &gaps);
        let w = window.as_nanos() as u64;
        prop_assert!(max_in_any_window(&admitted, w) <= n as usize,
            "{} in one window of {window_s}s (limit {n})", max_in_any_window(&admitted, w));
        // Liveness: refused only when the last admission was less than W ago.
        for (t, _) in &refused {
            let last = admitted.iter().rev().find(|&&a| a <= *t);
            prop_assert!(last.is_some_and(|&a| *t - a < w), "refused at {t} with last admission {last:?}");
        }
        // The first N requests of a burst are all admitted.
        if gaps.iter().take(n as usize).all(|g| *g == 0) && gaps.len() >= n as usize {
            prop_assert!(admitted.len() >= n as usize && admitted[n as usize - 1] == 0);
        }
    }

    /// Average mode: at most N + floor(L * N / W) in any interval of length L, so up to
    /// 2N - 1 within one W; a request W/N after the previous admission is always admitted.
    #[test]
    fn average_mode_bounds(n in 1u32..8, window_s in 1u64..600, gaps in gaps()) {
        let window = Duration::from_secs(window_s);
        let (admitted, refused) = run(RateLimit::average(n, window).unwrap(), &gaps);
        let w = window.as_nanos() as u64;
        let period = w / u64::from(n);
        for (i, &a) in admitted.iter().enumerate() {
            for (j, &b) in admitted.iter().enumerate().skip(i) {
                let count = (j - i + 1) as u64;
                prop_assert!(count <= u64::from(n) + (b - a) / period, "{count} admitted in {} ns", b - a);
            }
        }
        prop_assert!(max_in_any_window(&admitted, w) < 2 * n as usize);
        for (t, _) in &refused {
            let last = admitted.iter().rev().find(|&&a| a <= *t);
            prop_assert!(last.is_some_and(|&a| *t - a < period));
        }
    }

    /// Retry-After is honest: waiting that many seconds always gets the next permit.
    #[test]
    fn retry_after_is_sufficient(n in 1u32..6, window_s in 1u64..600, strict in any::<bool>(), gaps in gaps()) {
        let window = Duration::from_secs(window_s);
        let limit = if strict { RateLimit::per_window(n, window) } else { RateLimit::average(n, window) }.unwrap();
        let clock = FakeRelativeClock::default();
        let mut limits = RateLimits::with_clock(clock.clone());
        limits.set(ActionType::ScaleDeployment, limit);
        for gap in gaps {
            clock.advance(Duration::from_millis(gap));
            if let Err(retry_after) = limits.check(ActionType::ScaleDeployment) {
                prop_assert!(retry_after >= 1);
                prop_assert!(retry_after <= window_s);
                clock.advance(Duration::from_secs(retry_after));
                prop_assert!(limits.check(ActionType::ScaleDeployment).is_ok());
            }
        }
    }
}

#[test]
fn restart_limit_of_5_per_300s_on_a_fake_clock() {
    let clock = FakeRelativeClock::default();
    let mut limits = RateLimits::with_clock(clock.clone());
    limits.set(
        ActionType::RestartPod,
        RateLimit::per_window(5, Duration::from_secs(300)).unwrap(),
    );
    for _ in 0..5 {
        limits.check(ActionType::RestartPod).unwrap();
    }
    assert_eq!(limits.check(ActionType::RestartPod), Err(300));
    clock.advance(Duration::from_secs(299));
    assert_eq!(limits.check(ActionType::RestartPod), Err(1));
    clock.advance(Duration::from_millis(999));
    assert_eq!(limits.check(ActionType::RestartPod), Err(1));
    clock.advance(Duration::from_millis(1));
    limits.check(ActionType::RestartPod).unwrap();
    // Other action types have their own limiter.
    limits.check(ActionType::ScaleDeployment).unwrap();

    // The average mode lets 9 through within 300 s where the strict one allows 5.
    let (admitted, _) = run(
        RateLimit::average(5, Duration::from_secs(300)).unwrap(),
        &[0, 0, 0, 0, 0, 60_000, 60_000, 60_000, 59_999],
    );
    assert_eq!(admitted.len(), 8);
    assert_eq!(max_in_any_window(&admitted, 300_000_000_000), 8);
    let (admitted, _) = run(
        RateLimit::per_window(5, Duration::from_secs(300)).unwrap(),
        &[0, 0, 0, 0, 0, 60_000, 60_000, 60_000, 59_999],
    );
    assert_eq!(admitted.len(), 5);
}

#[test]
fn invalid_rate_limits_are_refused() {
    assert!(RateLimit::per_window(0, Duration::from_secs(1)).is_err());
    assert!(RateLimit::average(1, Duration::ZERO).is_err());
}

// ---------------------------------------------------------------- full admission

const NOW: u64 = 1_700_000_000;

struct Fixture {
    signer: KeyRing,
    verifier: Verifier,
    clock: FakeRelativeClock,
    counter: std::cell::Cell<u32>,
}

impl Fixture {
    fn new() -> Self {
        let secret = Secret::new(vec![9; 32]).unwrap();
        let mut signer = KeyRing::new();
        signer.insert_active("k1", secret.clone()).unwrap();
        let mut keys = KeyRing::new();
        keys.insert_verify_only("k1", secret).unwrap();
        Fixture {
            signer,
            verifier: Verifier::new(keys, InMemoryReplayStore::default()),
            clock: FakeRelativeClock::default(),
            counter: std::cell::Cell::new(0),
        }
    }

    fn envelope(&self, action: &Value) -> Envelope {
        let n = self.counter.get();
        self.counter.set(n + 1);
        self.signer
            .sign_at(
                action,
                NOW,
                Duration::from_secs(300),
                Nonce::new(format!("nonce{n:0>17}")).unwrap(),
            )
            .unwrap()
    }

    fn verified(&self, action: &Value) -> Verified<ActionRequest> {
        self.verifier
            .verify_as_at(self.envelope(action), NOW + 1)
            .unwrap()
    }

    fn admission(&self) -> Admission<FakeRelativeClock> {
        let mut limits = RateLimits::with_clock(self.clock.clone());
        limits.set(
            ActionType::RestartPod,
            RateLimit::per_window(2, Duration::from_secs(300)).unwrap(),
        );
        Admission::new(NamespaceAllowList::new(["shop", "web"]), limits)
    }
}

fn restart(ns: &str, name: &str) -> Value {
    json!({"type": "restart_pod", "namespace": ns, "name": name})
}

fn code(r: Result<Decision, AdmissionError>) -> ErrorCode {
    r.unwrap_err().code
}

#[test]
fn admits_and_rate_limits_with_retry_after() {
    let f = Fixture::new();
    let a = f.admission();
    for name in ["a", "b"] {
        match a.admit_at(f.verified(&restart("shop", name)), NOW).unwrap() {
            Decision::Admitted(ad) => {
                assert_eq!(ad.request().name(), name);
                assert!(matches!(ad.provenance(), Provenance::Envelope { .. }));
            }
            d => panic!("{d:?}"),
        }
    }
    let err = a
        .admit_at(f.verified(&restart("shop", "c")), NOW)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RateLimitExceeded);
    assert_eq!(err.retry_after_secs, Some(300));
    assert_eq!(
        err.retry_after_header(),
        Some(("Retry-After", "300".to_owned()))
    );
    let wire = serde_json::to_value(&err).unwrap();
    assert_eq!(wire["code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(wire["retry_after_seconds"], 300);
    assert!(wire["message"].as_str().unwrap().contains("restart_pod"));
    // Another type is not affected.
    let scale = json!({"type": "scale_deployment", "namespace": "shop", "name": "w",
                       "params": {"replicas": 1}});
    assert!(matches!(
        a.admit_at(f.verified(&scale), NOW),
        Ok(Decision::Admitted(_))
    ));
    f.clock.advance(Duration::from_secs(300));
    assert!(a.admit_at(f.verified(&restart("shop", "c")), NOW).is_ok());
}

#[test]
fn namespace_allow_list_is_forbidden() {
    let f = Fixture::new();
    let err = f
        .admission()
        .admit_at(f.verified(&restart("kube-system", "etcd-0")), NOW)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert_eq!(err.field.as_deref(), Some("namespace"));
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        json!({"code": "FORBIDDEN", "message": "namespace \"kube-system\" is not in the allow-list",
               "field": "namespace"})
    );
}

#[test]
fn required_policy_outcomes_map_to_their_codes() {
    let f = Fixture::new();
    let cases: Vec<(PolicyOutcome, ErrorCode, Option<u64>)> = vec![
        (
            PolicyOutcome::Block {
                reason: "no".into(),
            },
            ErrorCode::PolicyBlocked,
            None,
        ),
        (
            PolicyOutcome::RequireHuman {
                reason: "prod".into(),
            },
            ErrorCode::HitlRequired,
            None,
        ),
        (
            PolicyOutcome::BudgetExceeded {
                reason: "pdb".into(),
                retry_after_secs: Some(60),
            },
            ErrorCode::BudgetExceeded,
            Some(60),
        ),
        (
            PolicyOutcome::InvariantViolation {
                reason: "quorum".into(),
            },
            ErrorCode::InvariantViolation,
            None,
        ),
        (
            PolicyOutcome::Unavailable {
                reason: "opa down".into(),
                retry_after_secs: Some(5),
            },
            ErrorCode::RetryLater,
            Some(5),
        ),
    ];
    for (outcome, expected, retry) in cases {
        let a = f
            .admission()
            .require_policy(move |_: &ActionRequest, _: &Provenance| outcome.clone());
        let err = a
            .admit_at(f.verified(&restart("shop", "a")), NOW)
            .unwrap_err();
        assert_eq!(err.code, expected);
        assert_eq!(err.retry_after_secs, retry);
    }
    // The policy sees the typed request; refused actions do not use up the rate limit.
    let a = f
        .admission()
        .require_policy(|r: &ActionRequest, _: &Provenance| {
            if r.name() == "ok" {
                PolicyOutcome::Allow
            } else {
                PolicyOutcome::Block {
                    reason: format!("{} is protected", r.name()),
                }
            }
        });
    for _ in 0..5 {
        assert_eq!(
            code(a.admit_at(f.verified(&restart("shop", "db-0")), NOW)),
            ErrorCode::PolicyBlocked
        );
    }
    assert!(a.admit_at(f.verified(&restart("shop", "ok")), NOW).is_ok());
    assert!(a.admit_at(f.verified(&restart("shop", "ok")), NOW).is_ok());
}

#[test]
fn idempotency_key_duplicate_and_conflict() {
    let f = Fixture::new();
    let a = f
        .admission()
        .with_idempotency_store(InMemoryIdempotencyStore::new(10), Duration::from_secs(600));
    let with_key = |name: &str, key: &str| json!({"type": "restart_pod", "namespace": "shop", "name": name, "idempotency_key": key});
    assert!(matches!(
        a.admit_at(f.verified(&with_key("a", "K1")), NOW),
        Ok(Decision::Admitted(_))
    ));
    // A retry with a fresh envelope: duplicate, not executed again, no rate-limit permit.
    for _ in 0..3 {
        assert_eq!(
            a.admit_at(f.verified(&with_key("a", "K1")), NOW).unwrap(),
            Decision::Duplicate {
                idempotency_key: "K1".into()
            }
        );
    }
    // Same key, different action.
    let err = a
        .admit_at(f.verified(&with_key("b", "K1")), NOW)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert_eq!(err.field.as_deref(), Some("idempotency_key"));
    // The second permit is still there.
    assert!(matches!(
        a.admit_at(f.verified(&with_key("b", "K2")), NOW),
        Ok(Decision::Admitted(_))
    ));
    // Rate-limited: the key is released, so the same request may be retried later.
    let err = a
        .admit_at(f.verified(&with_key("c", "K3")), NOW)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RateLimitExceeded);
    f.clock.advance(Duration::from_secs(300));
    assert!(matches!(
        a.admit_at(f.verified(&with_key("c", "K3")), NOW),
        Ok(Decision::Admitted(_))
    ));
    // Keys expire (after the idempotency TTL; the rate limit has room again too).
    f.clock.advance(Duration::from_secs(300));
    assert!(matches!(
        a.admit_at(f.verified(&with_key("a", "K1")), NOW + 600),
        Ok(Decision::Admitted(_))
    ));
}

#[test]
fn verification_failures_map_to_codes_through_admit_envelope() {
    let f = Fixture::new();
    let a = f.admission();
    let env = f.envelope(&restart("shop", "a"));
    // Verified at the real current time, this 2023 envelope has expired.
    assert_eq!(
        code(a.admit_envelope(&f.verifier, env)),
        ErrorCode::Unauthorized
    );

    let now_signer = {
        let mut r = KeyRing::new();
        r.insert_active("k1", Secret::new(vec![9; 32]).unwrap())
            .unwrap();
        r
    };
    let env = now_signer
        .sign(&restart("shop", "a"), Duration::from_secs(60))
        .unwrap();
    assert!(matches!(
        a.admit_envelope(&f.verifier, env.clone()),
        Ok(Decision::Admitted(_))
    ));
    assert_eq!(
        code(a.admit_envelope(&f.verifier, env)),
        ErrorCode::Conflict
    );

    let bad_schema = now_signer
        .sign(
            &json!({"type": "restart_pod", "namespace": "shop"}),
            Duration::from_secs(60),
        )
        .unwrap();
    let err = a.admit_envelope(&f.verifier, bad_schema).unwrap_err();
    assert_eq!(err.code, ErrorCode::SchemaValidationFailed);
    assert_eq!(err.field.as_deref(), Some("action"));

    let mut other = KeyRing::new();
    other
        .insert_active("k9", Secret::new(vec![1; 32]).unwrap())
        .unwrap();
    let env = other
        .sign(&restart("shop", "a"), Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        code(a.admit_envelope(&f.verifier, env)),
        ErrorCode::Unauthorized
    );
}
