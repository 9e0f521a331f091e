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
/// * it runs in this process's network namespace (`/proc/PID/ns/net`): the
///   component the gate probes over the network is, and another cluster's
///   `kube-apiserver` visible in the same `/proc` (a kind node, a nested
///   cluster) is not. A process whose namespace cannot be read (no
///   privileges) still counts. Opt out with
///   [`any_network_namespace`](Self::any_network_namespace) when the
///   component runs in another namespace than this program (a pod without
///   `hostNetwork` probing the node's address),
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
    same_network_namespace: bool,
    /// This process's network namespace (`net:[INODE]`), read at prepare.
    own_netns: Option<String>,
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
            same_network_namespace: true,
            own_netns: None,
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

    /// Counts processes of every network namespace as the component (see
    /// the type's documentation).
    pub fn any_network_namespace(mut self) -> Self {
        self.same_network_namespace = false;
        self
    }

    /// The processes that can be the component, and how many others with
    /// its name and selectors were left out for running in another network
    /// namespace.
    fn candidates(&self) -> Result<(Vec<ProcessInfo>, usize), WitnessError> {
        let all = procfs::find_by_name(&self.proc_root, &self.name).map_err(|source| {
            WitnessError::Proc {
                path: self.proc_root.clone(),
                source,
            }
        })?;
        let (mine, foreign): (Vec<ProcessInfo>, Vec<ProcessInfo>) = all
            .into_iter()
            .filter(|p| self.selectors.iter().all(|s| s.check(&p.argv).is_ok()))
            .partition(|p| match &self.own_netns {
                Some(own) => procfs::net_namespace(&self.proc_root, p.pid)
                    .map_or(true, |theirs| theirs == *own),
                None => true,
            });
        Ok((mine, foreign.len()))
    }
}

impl RestartWitness for ProcessWitness {
    fn describe(&self) -> String {
        let mut s = format!("process `{}`", self.name);
        for sel in &self.selectors {
            s.push_str(&format!(" with {sel}"));
        }
        if !self.same_network_namespace {
            s.push_str(", in any network namespace");
        }
        s
    }

    fn prepare(&mut self, ctx: &WitnessContext<'_>) -> Result<(), WitnessError> {
        self.since = ctx.write_started;
        self.own_netns = if self.same_network_namespace {
            procfs::own_net_namespace(&self.proc_root).ok()
        } else {
            None
        };
        self.expected = ctx.expected_flags.to_vec();
        self.expected.extend(self.extra.iter().cloned());
        self.seen.clear();
        self.preexisting = self
            .candidates()?
            .0
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
        let (procs, foreign) = match self.candidates() {
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
        let mut detail = mismatch.unwrap_or_else(|| {
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
        if foreign > 0 {
            detail.push_str(&format!(
                "; {foreign} `{}` process(es) in other network namespaces ignored",
                self.name
            ));
        }
        WitnessState::Waiting { detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Lays out `/proc/PID` as the witness reads it: comm, cmdline, stat
    /// (start time in field 22) and the network namespace link.
    fn add_process(root: &Path, pid: u32, argv: &[&str], start_ticks: u64, netns: &str) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        std::fs::write(dir.join("comm"), "kube-apiserver\n").unwrap();
        let mut cmdline = argv.join("\0");
        cmdline.push('\0');
        std::fs::write(dir.join("cmdline"), cmdline).unwrap();
        let mut stat = format!("{pid} (kube-apiserver) S 1");
        // Fields 5..=21, then the start time (field 22), then a few more.
        for _ in 5..=21 {
            stat.push_str(" 0");
        }
        stat.push_str(&format!(" {start_ticks} 1000 10 0\n"));
        std::fs::write(dir.join("stat"), stat).unwrap();
        std::os::unix::fs::symlink(netns, dir.join("ns/net")).unwrap();
    }

    fn fake_proc(own_netns: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("self/ns")).unwrap();
        std::os::unix::fs::symlink(own_netns, root.path().join("self/ns/net")).unwrap();
        root
    }

    #[test]
    fn a_process_of_another_network_namespace_is_not_the_component() {
        // A kind (or other nested) cluster's kube-apiserver is visible in the
        // host's /proc. If it restarts after the write with the same flag
        // values, it must not be taken for ours: our probe is answered by the
        // old process, which has not restarted.
        let hz = 100;
        let root = fake_proc("net:[4026531840]");
        add_process(
            root.path(),
            200,
            &["kube-apiserver", "--secure-port=6443", "--profiling=true"],
            1_000,
            "net:[4026531840]",
        );
        let mut w = ProcessWitness::new("kube-apiserver")
            .select_flag("--secure-port", "6443")
            .proc_root(root.path());
        w.hz = hz;
        let expected = [FlagExpectation::set("--profiling", "false")];
        let write = BootInstant::from_ticks(2_000, hz);
        w.prepare(&WitnessContext::new(Phase::Apply, write, &expected))
            .unwrap();
        add_process(
            root.path(),
            300,
            &["kube-apiserver", "--secure-port=6443", "--profiling=false"],
            2_050,
            "net:[4026532999]",
        );
        let probe = ProbeOutcome::healthy("ok");
        let state = w.observe(&probe);
        let WitnessState::Waiting { detail } = &state else {
            panic!("{state}");
        };
        assert!(detail.contains("other network namespace"), "{detail}");

        // Our own restarted process is witnessed.
        std::fs::remove_dir_all(root.path().join("200")).unwrap();
        add_process(
            root.path(),
            400,
            &["kube-apiserver", "--secure-port=6443", "--profiling=false"],
            2_100,
            "net:[4026531840]",
        );
        let state = w.observe(&probe);
        assert!(
            matches!(&state, WitnessState::Witnessed { evidence } if evidence.starts_with("pid 400 ")),
            "{state}"
        );

        // Opting out counts every namespace (the newest process wins).
        let mut any = ProcessWitness::new("kube-apiserver")
            .proc_root(root.path())
            .any_network_namespace();
        any.hz = hz;
        any.prepare(&WitnessContext::new(Phase::Apply, write, &expected))
            .unwrap();
        add_process(
            root.path(),
            600,
            &["kube-apiserver", "--secure-port=6443", "--profiling=false"],
            2_200,
            "net:[4026532999]",
        );
        let state = any.observe(&probe);
        assert!(
            matches!(&state, WitnessState::Witnessed { evidence } if evidence.starts_with("pid 600 ")),
            "{state}"
        );
    }

    #[test]
    fn a_process_whose_namespace_cannot_be_read_still_counts() {
        // Without the privileges to read /proc/PID/ns (not root), nothing can
        // be told apart: keep the old behaviour rather than see nothing.
        let hz = 100;
        let root = fake_proc("net:[1]");
        let mut w = ProcessWitness::new("kube-apiserver").proc_root(root.path());
        w.hz = hz;
        let write = BootInstant::from_ticks(2_000, hz);
        w.prepare(&WitnessContext::new(Phase::Apply, write, &[]))
            .unwrap();
        add_process(root.path(), 500, &["kube-apiserver"], 2_050, "net:[1]");
        std::fs::remove_file(root.path().join("500/ns/net")).unwrap();
        assert!(w.observe(&ProbeOutcome::healthy("ok")).is_witnessed());
    }
}
