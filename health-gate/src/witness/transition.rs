//! The down-then-up witness: the health endpoint stops answering, then
//! answers healthy again.

use super::{RestartWitness, WitnessContext, WitnessState};
use crate::error::WitnessError;
use crate::outcome::Phase;
use crate::probe::{ProbeOutcome, ProbeStatus};

/// Witnesses a restart as a transition of the health endpoint: after the
/// write it goes down, then answers healthy again.
///
/// "Down" means nothing answers: [`ProbeStatus::Unreachable`] (connection
/// refused or reset, TLS handshake failure) in
/// [`down_probes`](Self::down_probes) consecutive polls (default 2). A probe
/// that merely times out is *not* down — a live but slow old process (a GC
/// pause, a loaded node) times out too — and neither is one failed
/// connection, so a hiccup of the old process is not taken for a restart.
/// A restarting kube-apiserver refuses connections for seconds.
///
/// Weaker evidence than [`ProcessWitness`](super::ProcessWitness): it does
/// not see the command line, and it needs the down phase to last at least
/// `down_probes` polls. When rolling back a change during which the endpoint never went
/// down, the original process is taken to have kept running (no restart will
/// come), and its health counts. It works where `/proc` of the component is
/// not visible (a remote
/// endpoint, another PID namespace). Each come-back after a fall counts as a
/// restart; at [`crash_loop_after`](Self::crash_loop_after) (default 3) it
/// reports a crash loop.
#[derive(Debug, Clone)]
#[must_use]
pub struct HealthTransitionWitness {
    crash_loop_after: u32,
    unhealthy_is_down: bool,
    down_probes: u32,
    /// Consecutive "down" polls so far.
    down_streak: u32,
    saw_down: bool,
    up: bool,
    comebacks: u32,
    /// Whether the endpoint went down at all after the change was applied.
    down_after_apply: bool,
    original_kept: bool,
}

impl Default for HealthTransitionWitness {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthTransitionWitness {
    /// A witness where "down" means not answering at all.
    pub fn new() -> Self {
        Self {
            crash_loop_after: 3,
            unhealthy_is_down: false,
            down_probes: 2,
            down_streak: 0,
            saw_down: false,
            up: false,
            comebacks: 0,
            down_after_apply: false,
            original_kept: false,
        }
    }

    /// Also count any answer that is not healthy (5xx, failing checks, a
    /// timeout) as "down". Catches restarts too quick to ever refuse a
    /// connection, at the price of taking an unhealthy blip of the old
    /// process (lasting [`down_probes`](Self::down_probes) polls) for a
    /// restart.
    pub fn unhealthy_is_down(mut self, on: bool) -> Self {
        self.unhealthy_is_down = on;
        self
    }

    /// How many consecutive "down" polls make the endpoint down (default 2;
    /// at least 1).
    pub fn down_probes(mut self, polls: u32) -> Self {
        self.down_probes = polls.max(1);
        self
    }

    /// Reports a crash loop after this many come-backs (default 3; at
    /// least 2).
    pub fn crash_loop_after(mut self, comebacks: u32) -> Self {
        self.crash_loop_after = comebacks.max(2);
        self
    }
}

impl RestartWitness for HealthTransitionWitness {
    fn describe(&self) -> String {
        "health endpoint down-then-up transition".to_owned()
    }

    fn prepare(&mut self, ctx: &WitnessContext<'_>) -> Result<(), WitnessError> {
        // Rolling back a change that never took the endpoint down: the
        // original process kept running and the restored configuration is
        // the one it runs, so no restart will come; its health counts.
        self.original_kept = ctx.phase == Phase::Rollback && !self.down_after_apply;
        if ctx.phase != Phase::Rollback {
            self.down_after_apply = false;
        }
        self.saw_down = self.original_kept;
        self.up = false;
        self.comebacks = 0;
        self.down_streak = 0;
        Ok(())
    }

    fn observe(&mut self, probe: &ProbeOutcome) -> WitnessState {
        let down = if self.unhealthy_is_down {
            !probe.is_healthy()
        } else {
            probe.status == ProbeStatus::Unreachable
        };
        if down {
            self.down_streak = self.down_streak.saturating_add(1);
        } else {
            self.down_streak = 0;
        }
        if self.down_streak >= self.down_probes {
            self.saw_down = true;
            self.up = false;
            self.original_kept = false;
            self.down_after_apply = true;
        } else if probe.is_healthy() && self.saw_down && !self.up {
            self.up = true;
            self.comebacks += 1;
        }
        if self.comebacks >= self.crash_loop_after {
            return WitnessState::CrashLoop {
                restarts: self.comebacks,
                detail: format!(
                    "the health endpoint went down and came back {} times",
                    self.comebacks
                ),
            };
        }
        if self.up && self.original_kept {
            WitnessState::Witnessed {
                evidence: "the health endpoint never went down after the change: the original \
                           process kept running"
                    .to_owned(),
            }
        } else if self.up {
            WitnessState::Witnessed {
                evidence: "the health endpoint went down and came back healthy".to_owned(),
            }
        } else if self.saw_down {
            WitnessState::Waiting {
                detail: format!("health endpoint down ({})", probe.status),
            }
        } else {
            WitnessState::Waiting {
                detail: format!(
                    "health endpoint has not gone down yet ({}): the old process may still be running",
                    probe.status
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::BootInstant;
    use crate::probe::{ProbeOutcome, ProbeStatus};
    use std::time::Duration;

    fn o(s: ProbeStatus) -> ProbeOutcome {
        ProbeOutcome::new(s, "", Duration::ZERO)
    }

    #[test]
    fn old_process_answering_ok_is_not_a_restart() {
        let mut w = HealthTransitionWitness::new();
        w.prepare(&WitnessContext::new(Phase::Apply, BootInstant::now(), &[]))
            .unwrap();
        for _ in 0..5 {
            assert!(!w.observe(&o(ProbeStatus::Healthy)).is_witnessed());
        }
        assert!(!w.observe(&o(ProbeStatus::Unreachable)).is_witnessed());
        assert!(!w.observe(&o(ProbeStatus::Unreachable)).is_witnessed());
        assert!(!w.observe(&o(ProbeStatus::Unhealthy)).is_witnessed());
        assert!(w.observe(&o(ProbeStatus::Healthy)).is_witnessed());
        // Down again (two polls): evidence lost until it comes back.
        w.observe(&o(ProbeStatus::Unreachable));
        assert!(!w.observe(&o(ProbeStatus::Unreachable)).is_witnessed());
        assert!(!w.observe(&o(ProbeStatus::TimedOut)).is_witnessed());
        assert!(w.observe(&o(ProbeStatus::Healthy)).is_witnessed());
    }

    #[test]
    fn a_hiccup_of_the_old_process_is_not_a_restart() {
        // A probe that times out (a GC pause, a loaded node, a slow network)
        // or one refused connection is no evidence the old process went away.
        for blip in [
            vec![ProbeStatus::TimedOut],
            vec![ProbeStatus::TimedOut, ProbeStatus::TimedOut],
            vec![ProbeStatus::Unreachable],
            vec![
                ProbeStatus::Unreachable,
                ProbeStatus::Healthy,
                ProbeStatus::Unreachable,
            ],
        ] {
            let mut w = HealthTransitionWitness::new();
            w.prepare(&WitnessContext::new(Phase::Apply, BootInstant::now(), &[]))
                .unwrap();
            assert!(!w.observe(&o(ProbeStatus::Healthy)).is_witnessed());
            for s in &blip {
                assert!(!w.observe(&o(*s)).is_witnessed());
            }
            let s = w.observe(&o(ProbeStatus::Healthy));
            assert!(!s.is_witnessed(), "{blip:?}: {s}");
        }
    }

    #[test]
    fn repeated_comebacks_are_a_crash_loop() {
        let mut w = HealthTransitionWitness::new().crash_loop_after(3);
        w.prepare(&WitnessContext::new(Phase::Apply, BootInstant::now(), &[]))
            .unwrap();
        let mut last = None;
        for _ in 0..3 {
            w.observe(&o(ProbeStatus::Unreachable));
            w.observe(&o(ProbeStatus::Unreachable));
            last = Some(w.observe(&o(ProbeStatus::Healthy)));
        }
        assert!(matches!(
            last,
            Some(WitnessState::CrashLoop { restarts: 3, .. })
        ));
    }

    #[test]
    fn rollback_after_a_change_that_never_went_down_accepts_the_original() {
        let mut w = HealthTransitionWitness::new();
        w.prepare(&WitnessContext::new(Phase::Apply, BootInstant::now(), &[]))
            .unwrap();
        assert!(!w.observe(&o(ProbeStatus::Healthy)).is_witnessed());
        w.prepare(&WitnessContext::new(
            Phase::Rollback,
            BootInstant::now(),
            &[],
        ))
        .unwrap();
        let s = w.observe(&o(ProbeStatus::Healthy));
        assert!(s.to_string().contains("original"), "{s}");

        // But after a change that did take it down, a restart is needed.
        let mut w = HealthTransitionWitness::new();
        w.prepare(&WitnessContext::new(Phase::Apply, BootInstant::now(), &[]))
            .unwrap();
        w.observe(&o(ProbeStatus::Unreachable));
        w.observe(&o(ProbeStatus::Unreachable));
        w.prepare(&WitnessContext::new(
            Phase::Rollback,
            BootInstant::now(),
            &[],
        ))
        .unwrap();
        assert!(!w.observe(&o(ProbeStatus::Healthy)).is_witnessed());
        w.observe(&o(ProbeStatus::Unreachable));
        w.observe(&o(ProbeStatus::Unreachable));
        assert!(w.observe(&o(ProbeStatus::Healthy)).is_witnessed());
    }

    #[test]
    fn unhealthy_counts_as_down_only_when_asked() {
        let mut w = HealthTransitionWitness::new();
        w.prepare(&WitnessContext::new(Phase::Apply, BootInstant::now(), &[]))
            .unwrap();
        w.observe(&o(ProbeStatus::Unhealthy));
        assert!(!w.observe(&o(ProbeStatus::Healthy)).is_witnessed());

        let mut w = HealthTransitionWitness::new().unhealthy_is_down(true);
        w.prepare(&WitnessContext::new(Phase::Apply, BootInstant::now(), &[]))
            .unwrap();
        w.observe(&o(ProbeStatus::Unhealthy));
        w.observe(&o(ProbeStatus::TimedOut));
        assert!(w.observe(&o(ProbeStatus::Healthy)).is_witnessed());

        // One refused poll is enough when asked for.
        let mut w = HealthTransitionWitness::new().down_probes(1);
        w.prepare(&WitnessContext::new(Phase::Apply, BootInstant::now(), &[]))
            .unwrap();
        w.observe(&o(ProbeStatus::Unreachable));
        assert!(w.observe(&o(ProbeStatus::Healthy)).is_witnessed());
    }
}
