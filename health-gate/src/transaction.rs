//! The gated transaction: plan, preflight, apply, witness the restart, wait
//! for settled health, verify — or roll back and gate the rollback.

use std::time::{Duration, Instant};

use crate::change::{Change, ChangePlan};
use crate::clock::BootInstant;
use crate::outcome::{
    Event, EventKind, FailureReason, GateTimings, Outcome, Phase, RestartEvidence, Timings,
};
use crate::policy::{Backoff, GatePolicy};
use crate::probe::{HealthProbe, ProbeOutcome, ProbeStatus};
use crate::verify::Verifier;
use crate::witness::{HealthTransitionWitness, RestartWitness, WitnessContext, WitnessState};

type EventCallback<'a> = Box<dyn FnMut(&Event) + 'a>;

/// A change applied under a health gate, rolled back if the gate fails.
///
/// [`run`](Self::run) goes through these steps, emitting an [`Event`] for
/// each (through `tracing` and the [`on_event`](Self::on_event) callback):
///
/// 1. **Check the policy** ([`GatePolicy::validate`]: e.g. a deadline shorter
///    than the settle window could never pass) and **plan** the change
///    (nothing touched). An error → [`Outcome::Failed`].
/// 2. **Preflight** (unless the policy skips it): the component must be
///    healthy before anything is written, else [`Outcome::Failed`].
/// 3. **Prepare the witness** (snapshot the running processes) — unless the
///    plan says no restart can come (a comment-only edit: the kubelet
///    restarts a static pod only when the decoded pod changes), or the
///    policy does not require a witness; the skip and its reason are
///    recorded. With no witness given and one required,
///    [`HealthTransitionWitness`] is used.
/// 4. **Apply** the change. An error → [`Outcome::Failed`] (nothing changed).
/// 5. **Gate**: poll the probe (starting at ~20 ms, backing off with jitter
///    to the cap, never sleeping past the deadline). Health counts only once
///    the witness has seen the restart with the intended flags — the old
///    process answering `ok` right after the write does not pass. Success
///    needs the settle window (continuous health for the settle duration and
///    the consecutive successes). A crash loop fails at once.
/// 6. **Verify** (optional); once the verifier passed, one more probe (and
///    witness observation) must still find the component healthy and
///    restarted, since the verifier may have run for a while.
/// 7. On any failure after the write: **roll back**, keeping the rejected
///    configuration for inspection, and gate the rollback the same way (old
///    flags witnessed, healthy, settled) → [`Outcome::RolledBack`], or
///    [`Outcome::RollbackFailed`] with the backup's path.
///
/// ```
/// use kubesafe_health_gate::{FileReplace, GatePolicy, Transaction};
/// use kubesafe_health_gate::probe::FnProbe;
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("config.yaml");
/// std::fs::write(&path, "level: 1\n")?;
///
/// let outcome = Transaction::new(
///     FileReplace::new(&path, "level: 2\n").restart_expected(false),
///     FnProbe::from_result("always healthy", || Ok(())),
/// )
/// .policy(GatePolicy::default().settle(Duration::from_millis(50), 2))
/// .run();
/// assert!(outcome.is_applied(), "{outcome}");
/// assert_eq!(std::fs::read_to_string(&path)?, "level: 2\n");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Transaction<'a> {
    change: Box<dyn Change + 'a>,
    probe: Box<dyn HealthProbe + 'a>,
    witness: Option<Box<dyn RestartWitness + 'a>>,
    verifier: Option<Box<dyn Verifier + 'a>>,
    policy: GatePolicy,
    on_event: Option<EventCallback<'a>>,
    started: Instant,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("probe", &self.probe.describe())
            .field("witness", &self.witness.as_ref().map(|w| w.describe()))
            .field("verifier", &self.verifier.as_ref().map(|v| v.describe()))
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// How the restart requirement is handled in one phase.
enum WitnessMode {
    Use,
    Skip(String),
}

impl<'a> Transaction<'a> {
    /// A transaction applying `change`, gated by `probe`, with the default
    /// [`GatePolicy`].
    #[must_use]
    pub fn new(change: impl Change + 'a, probe: impl HealthProbe + 'a) -> Self {
        Self {
            change: Box::new(change),
            probe: Box::new(probe),
            witness: None,
            verifier: None,
            policy: GatePolicy::default(),
            on_event: None,
            started: Instant::now(),
        }
    }

    /// Sets the restart witness.
    #[must_use]
    pub fn witness(mut self, witness: impl RestartWitness + 'a) -> Self {
        self.witness = Some(Box::new(witness));
        self
    }

    /// Sets a verifier, run once the component is healthy and settled.
    #[must_use]
    pub fn verifier(mut self, verifier: impl Verifier + 'a) -> Self {
        self.verifier = Some(Box::new(verifier));
        self
    }

    /// Sets the policy.
    #[must_use]
    pub fn policy(mut self, policy: GatePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Calls `f` with every event.
    #[must_use]
    pub fn on_event(mut self, f: impl FnMut(&Event) + 'a) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }

    /// Runs the transaction to its outcome.
    pub fn run(mut self) -> Outcome {
        self.started = Instant::now();
        let mut timings = Timings::default();
        if let Err(e) = self.policy.validate() {
            let reason = FailureReason::InvalidPolicy {
                error: e.to_string(),
            };
            return self.finish_failed(None, reason, timings);
        }

        let plan = match self.change.plan() {
            Ok(p) => p,
            Err(e) => {
                let reason = FailureReason::ChangeFailed {
                    error: e.to_string(),
                };
                return self.finish_failed(None, reason, timings);
            }
        };
        self.emit(Phase::Preflight, EventKind::Planned { plan: plan.clone() });

        if let Some(limit) = self.policy.preflight {
            let t = Instant::now();
            let result = self.preflight(limit);
            timings.preflight = Some(t.elapsed());
            if let Err(reason) = result {
                return self.finish_failed(Some(plan), reason, timings);
            }
            self.emit(Phase::Preflight, EventKind::PreflightPassed);
        }

        let mode = self.witness_mode(&plan);
        if matches!(mode, WitnessMode::Use) {
            let ctx = WitnessContext::new(Phase::Apply, BootInstant::now(), &plan.apply_flags);
            if let Some(w) = self.witness.as_mut()
                && let Err(e) = w.prepare(&ctx)
            {
                let reason = FailureReason::WitnessFailed {
                    error: e.to_string(),
                };
                return self.finish_failed(Some(plan), reason, timings);
            }
        }

        let write_at = Instant::now();
        let applied = match self.change.apply() {
            Ok(a) => a,
            Err(e) => {
                let reason = FailureReason::ChangeFailed {
                    error: e.to_string(),
                };
                return self.finish_failed(Some(plan), reason, timings);
            }
        };
        let mut gate_timings = GateTimings {
            write: write_at.elapsed(),
            ..GateTimings::default()
        };
        self.emit(
            Phase::Apply,
            EventKind::Written {
                kept: applied.backup.clone(),
            },
        );
        let use_witness = match &mode {
            WitnessMode::Use => true,
            WitnessMode::Skip(reason) => {
                self.emit(
                    Phase::Apply,
                    EventKind::WitnessSkipped {
                        reason: reason.clone(),
                    },
                );
                false
            }
        };
        let deadline = write_at + self.policy.deadline;
        let gate = self.gate(
            Phase::Apply,
            write_at,
            deadline,
            use_witness,
            &mut gate_timings,
        );
        timings.apply = Some(gate_timings);

        let reason = match gate {
            Ok(evidence) => {
                let restart = match (evidence, mode) {
                    (Some(evidence), _) => RestartEvidence::Witnessed { evidence },
                    (None, WitnessMode::Skip(reason)) => RestartEvidence::Skipped { reason },
                    (None, WitnessMode::Use) => RestartEvidence::Skipped {
                        reason: "no evidence recorded".to_owned(),
                    },
                };
                let verified = self.run_verifier(&mut timings).and_then(|ran| {
                    if ran {
                        self.confirm_after_verify(use_witness)
                    } else {
                        Ok(())
                    }
                });
                match verified {
                    Ok(()) => {
                        timings.total = self.started.elapsed();
                        let outcome = Outcome::Applied {
                            change: plan,
                            backup: applied.backup,
                            restart,
                            timings,
                        };
                        return self.finish(outcome);
                    }
                    Err(reason) => reason,
                }
            }
            Err(reason) => reason,
        };
        self.roll_back(plan, applied.backup, reason, use_witness, timings)
    }

    fn witness_mode(&mut self, plan: &ChangePlan) -> WitnessMode {
        if !plan.restart.is_expected() {
            return WitnessMode::Skip(plan.restart.reason().to_owned());
        }
        if !self.policy.require_restart_witness {
            return WitnessMode::Skip(
                "the policy does not require a restart witness (health right after the write \
                 may come from the old process)"
                    .to_owned(),
            );
        }
        if self.witness.is_none() {
            tracing::info!(
                "no restart witness given; using the health endpoint's down-then-up transition"
            );
            self.witness = Some(Box::new(HealthTransitionWitness::new()));
        }
        WitnessMode::Use
    }

    /// Runs the verifier, if any; `Ok(true)` when one ran and passed.
    fn run_verifier(&mut self, timings: &mut Timings) -> Result<bool, FailureReason> {
        let Some(mut verifier) = self.verifier.take() else {
            return Ok(false);
        };
        let t = Instant::now();
        let result = verifier.verify(self.policy.verify_timeout);
        timings.verify = Some(t.elapsed());
        self.verifier = Some(verifier);
        match result {
            Ok(detail) => {
                self.emit(Phase::Verify, EventKind::Verified { detail });
                Ok(true)
            }
            Err(detail) => Err(FailureReason::VerificationFailed { detail }),
        }
    }

    /// One more look once the verifier passed (it may have run for a
    /// minute): the component must still be healthy, and the witness must
    /// still see the restarted process.
    fn confirm_after_verify(&mut self, use_witness: bool) -> Result<(), FailureReason> {
        let outcome = self.probe.check(self.policy.probe_timeout);
        let state = if use_witness {
            self.witness.as_mut().map(|w| w.observe(&outcome))
        } else {
            None
        };
        self.emit(
            Phase::Verify,
            EventKind::Probe {
                outcome: outcome.clone(),
                attempt: 1,
            },
        );
        let witnessed = match state {
            Some(state) if !state.is_witnessed() => {
                self.emit(Phase::Verify, EventKind::Witness { state });
                false
            }
            _ => true,
        };
        if witnessed && outcome.is_healthy() {
            return Ok(());
        }
        let reason = FailureReason::UnhealthyAfterVerification {
            last_probe: Some(outcome),
        };
        self.emit(
            Phase::Verify,
            EventKind::GateFailed {
                reason: reason.clone(),
            },
        );
        Err(reason)
    }

    fn roll_back(
        &mut self,
        plan: ChangePlan,
        backup: Option<std::path::PathBuf>,
        reason: FailureReason,
        use_witness: bool,
        mut timings: Timings,
    ) -> Outcome {
        self.emit(
            Phase::Rollback,
            EventKind::RollingBack {
                reason: reason.clone(),
            },
        );
        let mut use_witness = use_witness;
        if use_witness {
            let ctx =
                WitnessContext::new(Phase::Rollback, BootInstant::now(), &plan.rollback_flags);
            if let Some(w) = self.witness.as_mut()
                && let Err(e) = w.prepare(&ctx)
            {
                use_witness = false;
                self.emit(
                    Phase::Rollback,
                    EventKind::WitnessSkipped {
                        reason: format!("witness unavailable for the rollback: {e}"),
                    },
                );
            }
        }
        let write_at = Instant::now();
        let rolled = match self.change.rollback() {
            Ok(r) => r,
            Err(e) => {
                timings.total = self.started.elapsed();
                let outcome = Outcome::RollbackFailed {
                    change: plan,
                    reason,
                    rollback_reason: FailureReason::RollbackWriteFailed {
                        error: e.to_string(),
                    },
                    backup,
                    broken_copy: None,
                    timings,
                };
                return self.finish(outcome);
            }
        };
        let mut gate_timings = GateTimings {
            write: write_at.elapsed(),
            ..GateTimings::default()
        };
        self.emit(
            Phase::Rollback,
            EventKind::Written {
                kept: rolled.broken_copy.clone(),
            },
        );
        let deadline = write_at + self.policy.rollback_deadline;
        let gate = self.gate(
            Phase::Rollback,
            write_at,
            deadline,
            use_witness,
            &mut gate_timings,
        );
        timings.rollback = Some(gate_timings);
        timings.total = self.started.elapsed();
        let outcome = match gate {
            Ok(_) => Outcome::RolledBack {
                change: plan,
                reason,
                broken_copy: rolled.broken_copy,
                timings,
            },
            Err(rollback_reason) => Outcome::RollbackFailed {
                change: plan,
                reason,
                rollback_reason,
                backup,
                broken_copy: rolled.broken_copy,
                timings,
            },
        };
        self.finish(outcome)
    }

    fn preflight(&mut self, limit: Duration) -> Result<(), FailureReason> {
        let start = Instant::now();
        let deadline = start + limit;
        let mut backoff = Backoff::new(self.policy.backoff);
        let mut last: Option<ProbeOutcome> = None;
        let mut attempt = 0_u32;
        loop {
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            let outcome = self.probe.check(
                self.policy
                    .probe_timeout
                    .min(remaining)
                    .max(Duration::from_millis(1)),
            );
            attempt += 1;
            let changed = last.as_ref().is_none_or(|l| probe_changed(l, &outcome));
            if changed {
                backoff.reset();
                self.emit(
                    Phase::Preflight,
                    EventKind::Probe {
                        outcome: outcome.clone(),
                        attempt,
                    },
                );
            }
            let healthy = outcome.is_healthy();
            last = Some(outcome);
            if healthy {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(FailureReason::PreflightUnhealthy {
                    waited: start.elapsed(),
                    last_probe: last,
                });
            }
            std::thread::sleep(backoff.sleep_for(now, deadline, None));
        }
    }

    /// Polls until settled health (with the restart witnessed when
    /// `use_witness`), a crash loop, or the deadline. Returns the witness's
    /// evidence on success.
    fn gate(
        &mut self,
        phase: Phase,
        write_at: Instant,
        deadline: Instant,
        use_witness: bool,
        t: &mut GateTimings,
    ) -> Result<Option<String>, FailureReason> {
        let settle_duration = self.policy.settle_duration;
        let settle_successes = self.policy.settle_successes.max(1);
        let mut backoff = Backoff::new(self.policy.backoff);
        let mut last_probe: Option<ProbeOutcome> = None;
        let mut last_witness: Option<WitnessState> = None;
        let mut evidence: Option<String> = None;
        let mut streak: Option<(Instant, u32)> = None;
        let mut longest_healthy = Duration::ZERO;
        loop {
            let now = Instant::now();
            if now >= deadline {
                let reason = timeout_reason(
                    now - write_at,
                    use_witness,
                    evidence.is_some(),
                    &last_witness,
                    last_probe,
                    longest_healthy,
                );
                t.gave_up = Some(now - write_at);
                self.emit(
                    phase,
                    EventKind::GateFailed {
                        reason: reason.clone(),
                    },
                );
                return Err(reason);
            }
            let probe_started = now;
            let timeout = self
                .policy
                .probe_timeout
                .min(deadline - now)
                .max(Duration::from_millis(1));
            // A probe whose timeout the deadline cut short and that got no
            // answer says little about the component; it must not replace
            // the last real answer (healthy, unhealthy, 401/403) as the
            // explanation of a failure. After no answer (unreachable, timed
            // out) it is the newest evidence and is kept.
            let cut_short = timeout < self.policy.probe_timeout;
            let outcome = self.probe.check(timeout);
            t.probes += 1;
            let observed = Instant::now();
            tracing::trace!(%phase, status = %outcome.status, latency = ?outcome.latency, "probe");

            let state = if use_witness {
                self.witness.as_mut().map(|w| w.observe(&outcome))
            } else {
                None
            };
            let mut changed = last_probe
                .as_ref()
                .is_none_or(|l| probe_changed(l, &outcome));
            if changed {
                self.emit(
                    phase,
                    EventKind::Probe {
                        outcome: outcome.clone(),
                        attempt: t.probes,
                    },
                );
            }
            let mut witnessed_now = !use_witness;
            if let Some(state) = state {
                if last_witness.as_ref() != Some(&state) {
                    changed = true;
                    self.emit(
                        phase,
                        EventKind::Witness {
                            state: state.clone(),
                        },
                    );
                }
                // The settle window is continuous health of ONE restarted
                // process: when the witness now names another one (the one
                // it saw died and was replaced between two polls), the
                // window starts over.
                if let (
                    Some(WitnessState::Witnessed { evidence: before }),
                    WitnessState::Witnessed { evidence: now_seen },
                ) = (&last_witness, &state)
                    && before != now_seen
                    && let Some((since, _)) = streak.take()
                {
                    self.emit(
                        phase,
                        EventKind::SettleInterrupted {
                            after: observed - since,
                        },
                    );
                }
                match &state {
                    WitnessState::CrashLoop { restarts, detail } => {
                        let after = observed - write_at;
                        t.gave_up = Some(after);
                        let reason = FailureReason::CrashLoop {
                            after,
                            restarts: *restarts,
                            detail: detail.clone(),
                        };
                        self.emit(
                            phase,
                            EventKind::GateFailed {
                                reason: reason.clone(),
                            },
                        );
                        return Err(reason);
                    }
                    WitnessState::Witnessed { evidence: e } => {
                        witnessed_now = true;
                        if t.witnessed.is_none() {
                            t.witnessed = Some(observed - write_at);
                        }
                        evidence = Some(e.clone());
                    }
                    WitnessState::Waiting { .. } => {}
                }
                last_witness = Some(state);
            }

            if witnessed_now && outcome.is_healthy() {
                let (since, count) = match streak {
                    Some((since, count)) => (since, count + 1),
                    None => {
                        if t.first_healthy.is_none() {
                            t.first_healthy = Some(observed - write_at);
                        }
                        self.emit(phase, EventKind::SettleStarted);
                        (probe_started, 1)
                    }
                };
                streak = Some((since, count));
                let healthy_for = observed - since;
                longest_healthy = longest_healthy.max(healthy_for);
                if count >= settle_successes && healthy_for >= settle_duration {
                    t.settled = Some(observed - write_at);
                    self.emit(
                        phase,
                        EventKind::Settled {
                            healthy_for,
                            successes: count,
                        },
                    );
                    return Ok(evidence);
                }
            } else if let Some((since, _)) = streak.take() {
                self.emit(
                    phase,
                    EventKind::SettleInterrupted {
                        after: observed - since,
                    },
                );
            }
            let hides_an_answer = cut_short
                && outcome.status == ProbeStatus::TimedOut
                && last_probe.as_ref().is_some_and(|p| p.status.is_answering());
            if !hides_an_answer {
                last_probe = Some(outcome);
            }

            if changed {
                backoff.reset();
            }
            let now = Instant::now();
            if now >= deadline {
                continue;
            }
            // Wake exactly when the settle window can complete.
            let wake_at = streak.and_then(|(since, count)| {
                (count + 1 >= settle_successes).then_some(since + settle_duration)
            });
            let wake_at = wake_at.filter(|w| *w > now);
            std::thread::sleep(backoff.sleep_for(now, deadline, wake_at));
        }
    }

    fn emit(&mut self, phase: Phase, kind: EventKind) {
        let event = Event {
            at: self.started.elapsed(),
            phase,
            kind,
        };
        match &event.kind {
            EventKind::Probe { .. } | EventKind::Witness { .. } => {
                tracing::debug!(%phase, at = ?event.at, "{}", event.kind);
            }
            EventKind::GateFailed { .. } | EventKind::RollingBack { .. } => {
                tracing::warn!(%phase, at = ?event.at, "{}", event.kind);
            }
            _ => tracing::info!(%phase, at = ?event.at, "{}", event.kind),
        }
        if let Some(cb) = self.on_event.as_mut() {
            cb(&event);
        }
    }

    fn finish_failed(
        &mut self,
        plan: Option<ChangePlan>,
        reason: FailureReason,
        mut timings: Timings,
    ) -> Outcome {
        timings.total = self.started.elapsed();
        let outcome = Outcome::Failed {
            change: plan,
            reason,
            timings,
        };
        self.finish(outcome)
    }

    fn finish(&mut self, outcome: Outcome) -> Outcome {
        let phase = match outcome.kind() {
            crate::outcome::OutcomeKind::Applied => Phase::Apply,
            crate::outcome::OutcomeKind::Failed => Phase::Preflight,
            _ => Phase::Rollback,
        };
        self.emit(
            phase,
            EventKind::Finished {
                outcome: outcome.kind(),
            },
        );
        match &outcome {
            Outcome::Applied { .. } => tracing::info!("{outcome}"),
            Outcome::RollbackFailed { .. } => tracing::error!("{outcome}"),
            _ => tracing::warn!("{outcome}"),
        }
        outcome
    }
}

/// Whether two probe outcomes differ in a way worth an event (status, HTTP
/// code or the set of failing checks; not latency or wording).
fn probe_changed(a: &ProbeOutcome, b: &ProbeOutcome) -> bool {
    a.status != b.status
        || a.http_status != b.http_status
        || !a.failed_checks().eq(b.failed_checks())
}

fn timeout_reason(
    waited: Duration,
    use_witness: bool,
    ever_witnessed: bool,
    last_witness: &Option<WitnessState>,
    last_probe: Option<ProbeOutcome>,
    longest_healthy: Duration,
) -> FailureReason {
    if use_witness && !ever_witnessed {
        return FailureReason::NotRestarted {
            waited,
            witness: last_witness
                .as_ref()
                .map_or_else(|| "no observation".to_owned(), ToString::to_string),
            last_probe,
        };
    }
    if last_probe
        .as_ref()
        .is_some_and(|p| p.status == ProbeStatus::Unauthorized)
    {
        return FailureReason::Unauthorized { waited, last_probe };
    }
    FailureReason::Unhealthy {
        waited,
        longest_healthy,
        last_probe,
    }
}
