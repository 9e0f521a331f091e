//! Restart witnesses: evidence that the component really restarted with the
//! new configuration before its health is trusted.
//!
//! Right after a static-pod manifest is written, the *old* process keeps
//! running and answers `ok` until the kubelet notices the change, kills it and
//! starts the new one — a gate that trusts the first `ok` passes on the old
//! process. A [`RestartWitness`] tells the gate when a restart with the
//! intended configuration has been seen, and reports a crash loop early.
//!
//! * [`ProcessWitness`] finds the component's process under `/proc`, checks
//!   that it started after the write and that its command line carries the
//!   intended flag values, and counts new processes to spot a crash loop.
//! * [`HealthTransitionWitness`] watches the health endpoint go down and come
//!   back up.

mod process;
pub mod procfs;
mod transition;

use serde::{Deserialize, Serialize};

pub use process::ProcessWitness;
pub use transition::HealthTransitionWitness;

use crate::clock::BootInstant;
use crate::error::WitnessError;
use crate::outcome::Phase;
use crate::probe::ProbeOutcome;

/// Evidence that a component restarted with the intended configuration.
///
/// The gate calls [`prepare`](Self::prepare) right before each write (the
/// change, then the rollback if there is one) and
/// [`observe`](Self::observe) at every poll after it, with that poll's probe
/// outcome.
pub trait RestartWitness {
    /// A short description for events and logs.
    fn describe(&self) -> String;

    /// Called right before a write; `ctx` says which phase and what the
    /// restarted process must carry. Snapshot whatever "before" means here.
    ///
    /// # Errors
    /// When the witness cannot work at all (for example `/proc` unreadable);
    /// the transaction then fails before anything is changed.
    fn prepare(&mut self, ctx: &WitnessContext<'_>) -> Result<(), WitnessError>;

    /// Called at every poll after the write.
    fn observe(&mut self, probe: &ProbeOutcome) -> WitnessState;
}

impl<W: RestartWitness + ?Sized> RestartWitness for Box<W> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn prepare(&mut self, ctx: &WitnessContext<'_>) -> Result<(), WitnessError> {
        (**self).prepare(ctx)
    }
    fn observe(&mut self, probe: &ProbeOutcome) -> WitnessState {
        (**self).observe(probe)
    }
}

/// What the witness is told before a write.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WitnessContext<'a> {
    /// Applying the change or rolling it back.
    pub phase: Phase,
    /// Taken right before the write; a process started earlier cannot carry
    /// the new configuration.
    pub write_started: BootInstant,
    /// Flags the restarted process must carry (from the change's plan: the
    /// new values when applying, the old ones when rolling back).
    pub expected_flags: &'a [FlagExpectation],
}

impl<'a> WitnessContext<'a> {
    /// Builds a context.
    #[must_use]
    pub fn new(
        phase: Phase,
        write_started: BootInstant,
        expected_flags: &'a [FlagExpectation],
    ) -> Self {
        Self {
            phase,
            write_started,
            expected_flags,
        }
    }
}

/// What a witness concluded at one poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WitnessState {
    /// No evidence yet (or the evidence went away: the restarted process
    /// died).
    Waiting {
        /// Why not yet.
        detail: String,
    },
    /// The component restarted with the intended configuration.
    Witnessed {
        /// What was seen, e.g. `pid 4242 started 1.2s after the write with
        /// --anonymous-auth=false`. It names the process seen and stays the
        /// same string while that process is the one seen: the gate starts
        /// its settle window over when it changes (another process replaced
        /// the one witnessed).
        evidence: String,
    },
    /// The component keeps restarting: fail now rather than at the deadline.
    CrashLoop {
        /// How many restarts were seen since the write.
        restarts: u32,
        /// What was seen.
        detail: String,
    },
}

impl WitnessState {
    /// Whether this is [`WitnessState::Witnessed`].
    #[must_use]
    pub fn is_witnessed(&self) -> bool {
        matches!(self, Self::Witnessed { .. })
    }
}

impl std::fmt::Display for WitnessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Waiting { detail } => write!(f, "waiting: {detail}"),
            Self::Witnessed { evidence } => write!(f, "witnessed: {evidence}"),
            Self::CrashLoop { restarts, detail } => {
                write!(f, "crash loop ({restarts} restarts): {detail}")
            }
        }
    }
}

/// A flag the component's command line must (or must not) carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlagExpectation {
    /// The flag with its leading dashes, e.g. `--anonymous-auth`.
    pub flag: String,
    /// The value it must have; `None`: the flag must be absent.
    pub value: Option<String>,
}

impl FlagExpectation {
    /// The flag must be present with this value. Leading dashes are optional
    /// (`anonymous-auth` and `--anonymous-auth` are the same flag).
    #[must_use]
    pub fn set(flag: impl AsRef<str>, value: impl Into<String>) -> Self {
        Self {
            flag: normalize_flag(flag.as_ref()),
            value: Some(value.into()),
        }
    }

    /// The flag must be absent.
    #[must_use]
    pub fn absent(flag: impl AsRef<str>) -> Self {
        Self {
            flag: normalize_flag(flag.as_ref()),
            value: None,
        }
    }

    /// Checks a command line (`argv[1..]` or the whole argv). The effective
    /// value of a flag given more than once is the last one, as with Go's
    /// flag parsing. Both `--flag=value` and `--flag value` count.
    ///
    /// # Errors
    /// A message saying what the command line has instead.
    pub fn check(&self, argv: &[String]) -> Result<(), String> {
        let found = effective_value(argv, &self.flag);
        match (&self.value, found) {
            (Some(want), Some(got)) if *want == got => Ok(()),
            (Some(want), Some(got)) => Err(format!("{}={got} (want {want})", self.flag)),
            (Some(want), None) => Err(format!("{} missing (want {want})", self.flag)),
            (None, None) => Ok(()),
            (None, Some(got)) => Err(format!("{}={got} (want it absent)", self.flag)),
        }
    }
}

impl std::fmt::Display for FlagExpectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}", self.flag),
            None => write!(f, "no {}", self.flag),
        }
    }
}

/// `--name` for `name`, `-name` or `--name`.
#[must_use]
pub fn normalize_flag(flag: &str) -> String {
    format!("--{}", flag.trim_start_matches('-'))
}

/// The effective value of `flag` (with dashes) on a command line: the last of
/// `--flag=value` / `--flag value`; a bare `--flag` followed by another flag
/// or nothing is `true` (a boolean switch).
#[must_use]
pub fn effective_value(argv: &[String], flag: &str) -> Option<String> {
    let mut value = None;
    let prefix = format!("{flag}=");
    let mut i = 0;
    while let Some(tok) = argv.get(i) {
        if let Some(v) = tok.strip_prefix(&prefix) {
            value = Some(v.to_owned());
        } else if tok == flag {
            match argv.get(i + 1) {
                Some(next) if !next.starts_with("--") => {
                    value = Some(next.clone());
                    i += 1;
                }
                _ => value = Some("true".to_owned()),
            }
        }
        i += 1;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flag_forms_and_last_wins() {
        let a = argv(
            "kube-apiserver --anonymous-auth=true --secure-port 6443 --anonymous-auth=false --profiling",
        );
        assert_eq!(
            effective_value(&a, "--anonymous-auth").as_deref(),
            Some("false")
        );
        assert_eq!(
            effective_value(&a, "--secure-port").as_deref(),
            Some("6443")
        );
        assert_eq!(effective_value(&a, "--profiling").as_deref(), Some("true"));
        assert_eq!(effective_value(&a, "--missing"), None);
        // A prefix of another flag is not that flag.
        assert_eq!(effective_value(&a, "--anonymous"), None);
    }

    #[test]
    fn expectations() {
        let a = argv("x --anonymous-auth=false --secure-port=6443");
        assert!(
            FlagExpectation::set("anonymous-auth", "false")
                .check(&a)
                .is_ok()
        );
        let e = FlagExpectation::set("--anonymous-auth", "true")
            .check(&a)
            .unwrap_err();
        assert_eq!(e, "--anonymous-auth=false (want true)");
        assert!(FlagExpectation::absent("--profiling").check(&a).is_ok());
        let e = FlagExpectation::absent("--secure-port")
            .check(&a)
            .unwrap_err();
        assert!(e.contains("want it absent"), "{e}");
        let e = FlagExpectation::set("--audit-log-path", "/var/log/a")
            .check(&a)
            .unwrap_err();
        assert!(e.contains("missing"), "{e}");
    }
}
