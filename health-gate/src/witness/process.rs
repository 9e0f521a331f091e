//! The process witness: a new process, started after the write, carrying the
//! intended flags.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::procfs::{self, ProcessInfo};
use super::{FlagExpectation, RestartWitness, WitnessContext, WitnessState};
use crate::clock::{BootInstant, human};
use crate::error::WitnessError;
use crate::outcome::Phase;
use crate::probe::ProbeOutcome;

/// Witnesses a restart by finding the component's process under `/proc`.
///
/// A process counts as the restarted component when
/// * its name matches (`/proc/PID/comm`, truncated by Linux to 15 bytes, or
///   the basename of `argv[0]`),
/// * it carries every [selector](Self::select_flag) flag (to tell apart
///   several instances, e.g. `--secure-port=6443`),
/// * it was not running when the write was about to happen, and its start
///   time (`/proc/PID/stat` field 22, clock ticks since boot) is not before
///   the write, and
/// * its command line carries the flags the change intends (from the
///   change's plan, plus any [`expect_flag`](Self::expect_flag)): this also
///   proves the running process really has the new setting.
///
/// When rolling back, the process that was running before the change also
/// counts, if it is still alive and carries the old flags: the change never
/// restarted the component, and the rollback will not either (the restored
/// pod is the one running).
///
/// Every new process seen after the write counts as a restart; at
/// [`crash_loop_after`](Self::crash_loop_after) (default 3) the witness
/// reports a crash loop so the gate can fail early. Processes that live less
/// than one poll interval can be missed: the gate's deadline still catches a
/// component that never comes up.
///
/// ```
/// use kubesafe_health_gate::witness::ProcessWitness;
///
/// let witness = ProcessWitness::new("kube-apiserver")
///     .select_flag("--secure-port", "6443")
///     .crash_loop_after(3);
/// # let _ = witness;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ProcessWitness {
    name: String,
    selectors: Vec<FlagExpectation>,
    extra: Vec<FlagExpectation>,
    crash_loop_after: u32,
    proc_root: PathBuf,
    // State of the current phase.
    hz: u64,
    phase: Phase,
    /// The processes running before the change was applied.
    original: BTreeSet<(u32, u64)>,
    preexisting: BTreeSet<(u32, u64)>,
    since: BootInstant,
    expected: Vec<FlagExpectation>,
    seen: BTreeMap<(u32, u64), bool>,
}

impl ProcessWitness {
    /// Witnesses processes named `name` (e.g. `kube-apiserver`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            selectors: Vec::new(),
            extra: Vec::new(),
            crash_loop_after: 3,
            proc_root: procfs::default_root(),
            hz: procfs::clock_ticks_per_second(),
            phase: Phase::Apply,
            original: BTreeSet::new(),
            preexisting: BTreeSet::new(),
            since: BootInstant::from_nanos(0),
            expected: Vec::new(),
            seen: BTreeMap::new(),
        }
    }

    /// Only processes whose command line has `flag=value` are considered the
    /// component (the others are ignored entirely).
    pub fn select_flag(mut self, flag: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.selectors.push(FlagExpectation::set(flag, value));
        self
    }

    /// An extra flag the restarted process must carry, on top of what the
    /// change's plan says.
    pub fn expect_flag(mut self, flag: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.extra.push(FlagExpectation::set(flag, value));
        self
    }

    /// Reports a crash loop once this many new processes have been seen
    /// since the write (default 3; at least 2).
    pub fn crash_loop_after(mut self, processes: u32) -> Self {
        self.crash_loop_after = processes.max(2);
        self
    }

    /// Reads processes from another procfs mount (default `/proc`), e.g. the
    /// host's `/proc` mounted into a container.
    pub fn proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }

    fn candidates(&self) -> Result<Vec<ProcessInfo>, WitnessError> {
        let all = procfs::find_by_name(&self.proc_root, &self.name).map_err(|source| {
            WitnessError::Proc {
                path: self.proc_root.clone(),
                source,
            }
        })?;
        Ok(all
            .into_iter()
            .filter(|p| self.selectors.iter().all(|s| s.check(&p.argv).is_ok()))
            .collect())
    }
}

impl RestartWitness for ProcessWitness {
    fn describe(&self) -> String {
        let mut s = format!("process `{}`", self.name);
        for sel in &self.selectors {
            s.push_str(&format!(" with {sel}"));
        }
        s
    }

    fn prepare(&mut self, ctx: &WitnessContext<'_>) -> Result<(), WitnessError> {
        self.since = ctx.write_started;
        self.expected = ctx.expected_flags.to_vec();
        self.expected.extend(self.extra.iter().cloned());
        self.seen.clear();
        self.preexisting = self
            .candidates()?
            .into_iter()
            .map(|p| (p.pid, p.start_ticks))
            .collect();
        self.phase = ctx.phase;
        if ctx.phase != Phase::Rollback {
            self.original = self.preexisting.clone();
        }
        tracing::debug!(
            witness = %self.describe(),
            preexisting = ?self.preexisting,
            expected = ?self.expected,
            "process witness prepared"
        );
        Ok(())
    }

    fn observe(&mut self, _probe: &ProbeOutcome) -> WitnessState {
        let procs = match self.candidates() {
            Ok(p) => p,
            Err(e) => {
                return WitnessState::Waiting {
                    detail: e.to_string(),
                };
            }
        };
        let since_ticks = self.since.as_ticks(self.hz);
        let mut matching: Option<(&ProcessInfo, String)> = None;
        let mut mismatch: Option<String> = None;
        let mut survivor: Option<String> = None;
        for p in &procs {
            let key = (p.pid, p.start_ticks);
            if self.phase == Phase::Rollback
                && self.original.contains(&key)
                && self.expected.iter().all(|e| e.check(&p.argv).is_ok())
            {
                // The change never restarted the component: the process from
                // before it is still running, with the old configuration.
                survivor = Some(format!(
                    "pid {} ({}) from before the change never stopped",
                    p.pid, self.name
                ));
            }
            if self.preexisting.contains(&key) || p.start_ticks < since_ticks {
                continue;
            }
            let problems: Vec<String> = self
                .expected
                .iter()
                .filter_map(|e| e.check(&p.argv).err())
                .collect();
            self.seen.insert(key, problems.is_empty());
            let after = p.started(self.hz).saturating_duration_since(self.since);
            if problems.is_empty() {
                let flags = if self.expected.is_empty() {
                    String::new()
                } else {
                    let list: Vec<String> = self.expected.iter().map(ToString::to_string).collect();
                    format!(" with {}", list.join(" "))
                };
                matching = Some((
                    p,
                    format!(
                        "pid {} ({}) started {} after the write{flags}",
                        p.pid,
                        self.name,
                        human(after)
                    ),
                ));
            } else {
                mismatch = Some(format!(
                    "pid {} started {} after the write but its command line has {}",
                    p.pid,
                    human(after),
                    problems.join(", ")
                ));
            }
        }
        let starts = u32::try_from(self.seen.len()).unwrap_or(u32::MAX);
        if starts >= self.crash_loop_after {
            let pids: Vec<String> = self.seen.keys().map(|(pid, _)| pid.to_string()).collect();
            return WitnessState::CrashLoop {
                restarts: starts,
                detail: format!(
                    "{starts} new `{}` processes since the write (pids {})",
                    self.name,
                    pids.join(", ")
                ),
            };
        }
        if let Some((_, evidence)) = matching {
            return WitnessState::Witnessed { evidence };
        }
        if let Some(evidence) = survivor {
            return WitnessState::Witnessed { evidence };
        }
        let detail = mismatch.unwrap_or_else(|| {
            let old: Vec<String> = procs.iter().map(|p| p.pid.to_string()).collect();
            if old.is_empty() {
                format!("no `{}` process running", self.name)
            } else {
                format!(
                    "no `{}` process started since the write (running: pid {})",
                    self.name,
                    old.join(", ")
                )
            }
        });
        WitnessState::Waiting { detail }
    }
}
