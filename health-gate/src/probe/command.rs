//! A probe that runs a program: exit code 0 is healthy.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{HealthProbe, ProbeOutcome, ProbeStatus};
use crate::exec::{self, Program, RunEnd};

/// Runs a program as a health check: exit code 0 is
/// [`ProbeStatus::Healthy`], any other exit code [`ProbeStatus::Unhealthy`]
/// (the detail carries the last line of stderr, else stdout), still running
/// at the timeout [`ProbeStatus::TimedOut`] (the program and every process it
/// started are killed), and a
/// program that cannot be started [`ProbeStatus::Error`].
///
/// ```
/// use kubesafe_health_gate::probe::{CommandProbe, HealthProbe, ProbeStatus};
/// use std::time::Duration;
///
/// let mut probe = CommandProbe::new("sh").arg("-c").arg("exit 0");
/// assert_eq!(probe.check(Duration::from_secs(5)).status, ProbeStatus::Healthy);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct CommandProbe {
    program: Program,
}

impl CommandProbe {
    /// A probe running `program` (looked up in `PATH` if it has no slash).
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: Program::new(program),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.program.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.program.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the program in this directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.program.cwd = Some(dir.into());
        self
    }

    /// Sets an environment variable for the program.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.program.env.push((key.into(), value.into()));
        self
    }
}

impl HealthProbe for CommandProbe {
    fn describe(&self) -> String {
        format!("command `{}`", self.program.describe())
    }

    fn check(&mut self, timeout: Duration) -> ProbeOutcome {
        let started = Instant::now();
        let end = exec::run(&self.program, timeout);
        let latency = started.elapsed();
        match end {
            RunEnd::Exited {
                status,
                stdout,
                stderr,
            } => {
                let line = exec::last_line(&stderr).or_else(|| exec::last_line(&stdout));
                if status.success() {
                    ProbeOutcome::new(
                        ProbeStatus::Healthy,
                        line.unwrap_or_else(|| "exit code 0".to_owned()),
                        latency,
                    )
                } else {
                    let code = status
                        .code()
                        .map_or_else(|| format!("{status}"), |c| format!("exit code {c}"));
                    let detail = match line {
                        Some(l) => format!("{code}: {l}"),
                        None => code,
                    };
                    ProbeOutcome::new(ProbeStatus::Unhealthy, detail, latency)
                }
            }
            RunEnd::TimedOut => ProbeOutcome::new(
                ProbeStatus::TimedOut,
                format!(
                    "still running after {}; killed",
                    crate::clock::human(timeout)
                ),
                latency,
            ),
            RunEnd::SpawnFailed(e) => ProbeOutcome::new(
                ProbeStatus::Error,
                format!("cannot start {:?}: {e}", self.program.program),
                latency,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_to_statuses() {
        let mut ok = CommandProbe::new("sh").args(["-c", "echo fine"]);
        let o = ok.check(Duration::from_secs(5));
        assert_eq!(o.status, ProbeStatus::Healthy);
        assert_eq!(o.detail, "fine");

        let mut bad = CommandProbe::new("sh").args(["-c", "echo etcd down >&2; exit 3"]);
        let o = bad.check(Duration::from_secs(5));
        assert_eq!(o.status, ProbeStatus::Unhealthy);
        assert_eq!(o.detail, "exit code 3: etcd down");
    }

    #[test]
    fn slow_program_is_killed_at_the_timeout() {
        let mut slow = CommandProbe::new("sleep").arg("30");
        let started = Instant::now();
        let o = slow.check(Duration::from_millis(200));
        assert_eq!(o.status, ProbeStatus::TimedOut);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn background_grandchild_holding_the_pipe_does_not_stall() {
        let mut p = CommandProbe::new("sh").args(["-c", "sleep 5 & echo started; exit 0"]);
        let started = Instant::now();
        let o = p.check(Duration::from_secs(3));
        assert_eq!(o.status, ProbeStatus::Healthy, "{o}");
        assert_eq!(o.detail, "started");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn missing_program_is_a_probe_error() {
        let mut p = CommandProbe::new("/nonexistent/kubesafe-probe");
        let o = p.check(Duration::from_secs(1));
        assert_eq!(o.status, ProbeStatus::Error);
        assert!(
            o.detail.contains("/nonexistent/kubesafe-probe"),
            "{}",
            o.detail
        );
    }

    #[test]
    fn env_and_cwd_are_passed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("marker"), "x").unwrap();
        let mut p = CommandProbe::new("sh")
            .args(["-c", "test -f marker && test \"$KS\" = yes"])
            .current_dir(dir.path())
            .env("KS", "yes");
        assert_eq!(p.check(Duration::from_secs(5)).status, ProbeStatus::Healthy);
    }
}
