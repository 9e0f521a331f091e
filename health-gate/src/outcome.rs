//! Outcomes and events of a gated transaction (serde-serializable: the CLI
//! prints them as JSON, the audit log records them).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::change::ChangePlan;
use crate::clock::human;
use crate::probe::ProbeOutcome;

/// The step of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Checking the component is healthy before writing anything.
    Preflight,
    /// Applying the change and gating it.
    Apply,
    /// Running the verifier.
    Verify,
    /// Rolling the change back and gating the rollback.
    Rollback,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Preflight => "preflight",
            Self::Apply => "apply",
            Self::Verify => "verify",
            Self::Rollback => "rollback",
        })
    }
}

/// Why a transaction did not end in [`Outcome::Applied`], or why a rollback
/// failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureReason {
    /// The component was not healthy before the change.
    PreflightUnhealthy {
        /// Time spent trying.
        #[serde(with = "crate::clock::duration_ms", rename = "waited_ms")]
        waited: Duration,
        /// The last probe outcome.
        last_probe: Option<ProbeOutcome>,
    },
    /// The change could not be planned or applied (nothing changed).
    ChangeFailed {
        /// The error.
        error: String,
    },
    /// The restart witness could not start (nothing changed).
    WitnessFailed {
        /// The error.
        error: String,
    },
    /// No restart with the intended configuration was seen before the
    /// deadline.
    NotRestarted {
        /// Time waited since the write.
        #[serde(with = "crate::clock::duration_ms", rename = "waited_ms")]
        waited: Duration,
        /// What the witness last said.
        witness: String,
        /// The last probe outcome.
        last_probe: Option<ProbeOutcome>,
    },
    /// Restarted, but not healthy (or not settled) before the deadline.
    Unhealthy {
        /// Time waited since the write.
        #[serde(with = "crate::clock::duration_ms", rename = "waited_ms")]
        waited: Duration,
        /// The longest continuous healthy stretch seen.
        #[serde(with = "crate::clock::duration_ms", rename = "longest_healthy_ms")]
        longest_healthy: Duration,
        /// The last probe outcome.
        last_probe: Option<ProbeOutcome>,
    },
    /// The probe's credentials were rejected (401/403) up to the deadline:
    /// the component is up but its health could not be checked.
    Unauthorized {
        /// Time waited since the write.
        #[serde(with = "crate::clock::duration_ms", rename = "waited_ms")]
        waited: Duration,
        /// The last probe outcome.
        last_probe: Option<ProbeOutcome>,
    },
    /// The component is crash-looping.
    CrashLoop {
        /// Time since the write.
        #[serde(with = "crate::clock::duration_ms", rename = "after_ms")]
        after: Duration,
        /// Restarts seen.
        restarts: u32,
        /// What the witness saw.
        detail: String,
    },
    /// The verifier rejected the change.
    VerificationFailed {
        /// The verifier's reason.
        detail: String,
    },
    /// Healthy and settled before the verifier ran, but no longer after it
    /// (or the witness lost the restarted process meanwhile): the verifier's
    /// verdict is about a component that is gone.
    UnhealthyAfterVerification {
        /// The probe after the verifier.
        last_probe: Option<ProbeOutcome>,
    },
    /// The rollback could not be written.
    RollbackWriteFailed {
        /// The error.
        error: String,
    },
    /// The [`GatePolicy`](crate::GatePolicy) cannot work (see
    /// [`GatePolicy::validate`](crate::GatePolicy::validate)); nothing was
    /// written.
    InvalidPolicy {
        /// What is wrong, naming the setting.
        error: String,
    },
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = |p: &Option<ProbeOutcome>| {
            p.as_ref()
                .map(|p| format!("; last probe: {p}"))
                .unwrap_or_default()
        };
        match self {
            Self::PreflightUnhealthy { waited, last_probe } => write!(
                f,
                "not healthy before the change (tried for {}){}",
                human(*waited),
                last(last_probe)
            ),
            Self::ChangeFailed { error } => write!(f, "change not applied: {error}"),
            Self::WitnessFailed { error } => write!(f, "restart witness unavailable: {error}"),
            Self::NotRestarted {
                waited,
                witness,
                last_probe,
            } => write!(
                f,
                "no restart with the new configuration within {} ({witness}){}",
                human(*waited),
                last(last_probe)
            ),
            Self::Unhealthy {
                waited,
                longest_healthy,
                last_probe,
            } => write!(
                f,
                "not healthy and settled within {} (longest healthy stretch {}){}",
                human(*waited),
                human(*longest_healthy),
                last(last_probe)
            ),
            Self::Unauthorized { waited, last_probe } => write!(
                f,
                "health could not be checked within {}: the probe's credentials were rejected{}",
                human(*waited),
                last(last_probe)
            ),
            Self::CrashLoop {
                after,
                restarts,
                detail,
            } => write!(
                f,
                "crash loop after {} ({restarts} restarts): {detail}",
                human(*after)
            ),
            Self::VerificationFailed { detail } => write!(f, "verification failed: {detail}"),
            Self::UnhealthyAfterVerification { last_probe } => write!(
                f,
                "verified, but no longer healthy after the verification{}",
                last(last_probe)
            ),
            Self::RollbackWriteFailed { error } => write!(f, "rollback not written: {error}"),
            Self::InvalidPolicy { error } => write!(f, "invalid gate policy: {error}"),
        }
    }
}

/// Timings of one gated write (the change or the rollback), measured from
/// the write.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GateTimings {
    /// Time to perform the write itself.
    #[serde(with = "crate::clock::duration_ms", rename = "write_ms")]
    pub write: Duration,
    /// When the restart was witnessed.
    #[serde(with = "crate::clock::option_duration_ms", rename = "witnessed_ms")]
    pub witnessed: Option<Duration>,
    /// When the first counted healthy probe answered.
    #[serde(with = "crate::clock::option_duration_ms", rename = "first_healthy_ms")]
    pub first_healthy: Option<Duration>,
    /// When the settle window completed (the verdict).
    #[serde(with = "crate::clock::option_duration_ms", rename = "settled_ms")]
    pub settled: Option<Duration>,
    /// When the gate gave up.
    #[serde(with = "crate::clock::option_duration_ms", rename = "gave_up_ms")]
    pub gave_up: Option<Duration>,
    /// Probes sent.
    pub probes: u32,
}

/// Timings of a transaction.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Timings {
    /// From start to outcome.
    #[serde(with = "crate::clock::duration_ms", rename = "total_ms")]
    pub total: Duration,
    /// The preflight.
    #[serde(with = "crate::clock::option_duration_ms", rename = "preflight_ms")]
    pub preflight: Option<Duration>,
    /// The change's gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<GateTimings>,
    /// The verifier.
    #[serde(with = "crate::clock::option_duration_ms", rename = "verify_ms")]
    pub verify: Option<Duration>,
    /// The rollback's gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<GateTimings>,
}

/// How the restart requirement was met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RestartEvidence {
    /// The witness saw it.
    Witnessed {
        /// The witness's evidence.
        evidence: String,
    },
    /// No restart was waited for.
    Skipped {
        /// Why (no restart can come; no witness configured; the policy
        /// does not require one).
        reason: String,
    },
}

/// The result of a gated transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The change is in place, the component restarted with it, is healthy
    /// and settled (and verified, if a verifier was given).
    Applied {
        /// The change.
        change: ChangePlan,
        /// Backup of the configuration from before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup: Option<PathBuf>,
        /// How the restart requirement was met.
        restart: RestartEvidence,
        /// Timings.
        timings: Timings,
    },
    /// The change was rejected and rolled back; the old configuration is
    /// running and healthy again.
    RolledBack {
        /// The change.
        change: ChangePlan,
        /// Why it was rolled back.
        reason: FailureReason,
        /// Where the rejected configuration is kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        broken_copy: Option<PathBuf>,
        /// Timings.
        timings: Timings,
    },
    /// The change was rejected, and the rollback did not bring the old
    /// configuration back healthy. Needs a human: the backup holds the
    /// configuration from before the change.
    RollbackFailed {
        /// The change.
        change: ChangePlan,
        /// Why the change was rolled back.
        reason: FailureReason,
        /// Why the rollback failed.
        rollback_reason: FailureReason,
        /// Backup of the configuration from before the change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backup: Option<PathBuf>,
        /// Where the rejected configuration is kept, if the rollback got
        /// that far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        broken_copy: Option<PathBuf>,
        /// Timings.
        timings: Timings,
    },
    /// Nothing was changed.
    Failed {
        /// The change, if it could be planned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change: Option<ChangePlan>,
        /// Why.
        reason: FailureReason,
        /// Timings.
        timings: Timings,
    },
}

/// The kind of an [`Outcome`], without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutcomeKind {
    /// [`Outcome::Applied`].
    Applied,
    /// [`Outcome::RolledBack`].
    RolledBack,
    /// [`Outcome::RollbackFailed`].
    RollbackFailed,
    /// [`Outcome::Failed`].
    Failed,
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Applied => "applied",
            Self::RolledBack => "rolled back",
            Self::RollbackFailed => "ROLLBACK FAILED",
            Self::Failed => "failed (nothing changed)",
        })
    }
}

impl Outcome {
    /// The kind.
    #[must_use]
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Self::Applied { .. } => OutcomeKind::Applied,
            Self::RolledBack { .. } => OutcomeKind::RolledBack,
            Self::RollbackFailed { .. } => OutcomeKind::RollbackFailed,
            Self::Failed { .. } => OutcomeKind::Failed,
        }
    }

    /// Whether the change is in place.
    #[must_use]
    pub fn is_applied(&self) -> bool {
        matches!(self, Self::Applied { .. })
    }

    /// The timings.
    #[must_use]
    pub fn timings(&self) -> &Timings {
        match self {
            Self::Applied { timings, .. }
            | Self::RolledBack { timings, .. }
            | Self::RollbackFailed { timings, .. }
            | Self::Failed { timings, .. } => timings,
        }
    }

    /// Why the change is not in place (`None` for `Applied`).
    #[must_use]
    pub fn reason(&self) -> Option<&FailureReason> {
        match self {
            Self::Applied { .. } => None,
            Self::RolledBack { reason, .. }
            | Self::RollbackFailed { reason, .. }
            | Self::Failed { reason, .. } => Some(reason),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = human(self.timings().total);
        match self {
            Self::Applied {
                change, restart, ..
            } => {
                write!(f, "applied in {total}: {}", change.description)?;
                match restart {
                    RestartEvidence::Witnessed { evidence } => write!(f, " ({evidence})"),
                    RestartEvidence::Skipped { reason } => write!(f, " (no restart: {reason})"),
                }
            }
            Self::RolledBack {
                reason,
                broken_copy,
                ..
            } => {
                write!(f, "rolled back after {total}: {reason}")?;
                if let Some(b) = broken_copy {
                    write!(f, "; rejected configuration kept in {}", b.display())?;
                }
                Ok(())
            }
            Self::RollbackFailed {
                reason,
                rollback_reason,
                backup,
                ..
            } => {
                write!(
                    f,
                    "ROLLBACK FAILED after {total}: {reason}; then {rollback_reason}"
                )?;
                if let Some(b) = backup {
                    write!(f, "; the configuration from before is in {}", b.display())?;
                }
                Ok(())
            }
            Self::Failed { reason, .. } => write!(f, "failed, nothing changed: {reason}"),
        }
    }
}

/// One step of a transaction, given to the caller's callback and logged
/// through `tracing`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Time since the transaction started.
    #[serde(with = "crate::clock::duration_ms", rename = "at_ms")]
    pub at: Duration,
    /// The phase.
    pub phase: Phase,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened at an [`Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The change was planned.
    Planned {
        /// The plan.
        plan: ChangePlan,
    },
    /// The probe's result changed (only changes are reported, not every
    /// poll).
    Probe {
        /// The outcome.
        outcome: ProbeOutcome,
        /// Probes sent so far in this phase.
        attempt: u32,
    },
    /// The preflight passed.
    PreflightPassed,
    /// The write was done.
    Written {
        /// Backup (apply) or rejected copy (rollback).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept: Option<PathBuf>,
    },
    /// The witness requirement is skipped.
    WitnessSkipped {
        /// Why.
        reason: String,
    },
    /// The witness's state changed.
    Witness {
        /// The state.
        state: crate::witness::WitnessState,
    },
    /// Healthy after the restart: the settle window starts.
    SettleStarted,
    /// Health was lost during the settle window.
    SettleInterrupted {
        /// How long it had been healthy.
        #[serde(with = "crate::clock::duration_ms", rename = "after_ms")]
        after: Duration,
    },
    /// The settle window completed.
    Settled {
        /// Healthy for this long.
        #[serde(with = "crate::clock::duration_ms", rename = "healthy_for_ms")]
        healthy_for: Duration,
        /// Consecutive healthy probes.
        successes: u32,
    },
    /// The gate gave up.
    GateFailed {
        /// Why.
        reason: FailureReason,
    },
    /// The verifier passed.
    Verified {
        /// Its output.
        detail: String,
    },
    /// Rolling back.
    RollingBack {
        /// Why.
        reason: FailureReason,
    },
    /// The transaction ended.
    Finished {
        /// Its outcome.
        outcome: OutcomeKind,
    },
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Planned { plan } => write!(
                f,
                "planned: {} (restart {}: {})",
                plan.description,
                if plan.restart.is_expected() {
                    "expected"
                } else {
                    "not expected"
                },
                plan.restart.reason()
            ),
            Self::Probe { outcome, attempt } => write!(f, "probe #{attempt}: {outcome}"),
            Self::PreflightPassed => f.write_str("healthy before the change"),
            Self::Written { kept } => match kept {
                Some(p) => write!(f, "written (kept {})", p.display()),
                None => f.write_str("written"),
            },
            Self::WitnessSkipped { reason } => write!(f, "not waiting for a restart: {reason}"),
            Self::Witness { state } => write!(f, "witness {state}"),
            Self::SettleStarted => f.write_str("healthy; settle window started"),
            Self::SettleInterrupted { after } => {
                write!(
                    f,
                    "health lost after {} in the settle window",
                    human(*after)
                )
            }
            Self::Settled {
                healthy_for,
                successes,
            } => write!(
                f,
                "settled: healthy for {} over {successes} probes",
                human(*healthy_for)
            ),
            Self::GateFailed { reason } => write!(f, "gate failed: {reason}"),
            Self::Verified { detail } => write!(f, "verified: {detail}"),
            Self::RollingBack { reason } => write!(f, "rolling back: {reason}"),
            Self::Finished { outcome } => write!(f, "finished: {outcome}"),
        }
    }
}
