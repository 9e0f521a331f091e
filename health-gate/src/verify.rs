//! Optional verification after the component is healthy: the "audit check"
//! (e.g. a CIS benchmark check that the setting is now effective).

use std::ffi::OsString;
use std::time::Duration;

use crate::exec::{self, Program, RunEnd};

/// Checks, once the component is healthy and settled, that the change did
/// what it should. A failure rolls the change back.
pub trait Verifier {
    /// A short description for events and logs.
    fn describe(&self) -> String;

    /// Runs the check within `timeout`.
    ///
    /// # Errors
    /// A one-line reason when the check fails (or cannot run).
    fn verify(&mut self, timeout: Duration) -> Result<String, String>;
}

impl<V: Verifier + ?Sized> Verifier for Box<V> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn verify(&mut self, timeout: Duration) -> Result<String, String> {
        (**self).verify(timeout)
    }
}

/// Runs a program; exit code 0 passes. At the timeout the program and every
/// process it started (its process group) are killed.
///
/// ```
/// use kubesafe_health_gate::verify::{CommandVerifier, Verifier};
/// use std::time::Duration;
///
/// let mut v = CommandVerifier::new("sh").args(["-c", "echo check 1.2.1 PASS"]);
/// assert_eq!(v.verify(Duration::from_secs(5)), Ok("check 1.2.1 PASS".to_owned()));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct CommandVerifier {
    program: Program,
}

impl CommandVerifier {
    /// A verifier running `program`.
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

    /// A verifier running `sh -c script`.
    pub fn shell(script: impl Into<OsString>) -> Self {
        Self::new("sh").arg("-c").arg(script)
    }
}

impl Verifier for CommandVerifier {
    fn describe(&self) -> String {
        format!("command `{}`", self.program.describe())
    }

    fn verify(&mut self, timeout: Duration) -> Result<String, String> {
        match exec::run(&self.program, timeout) {
            RunEnd::Exited {
                status,
                stdout,
                stderr,
            } => {
                let line = exec::last_line(&stdout).or_else(|| exec::last_line(&stderr));
                if status.success() {
                    Ok(line.unwrap_or_else(|| "exit code 0".to_owned()))
                } else {
                    let line = exec::last_line(&stderr).or_else(|| exec::last_line(&stdout));
                    let code = status
                        .code()
                        .map_or_else(|| format!("{status}"), |c| format!("exit code {c}"));
                    Err(match line {
                        Some(l) => format!("{code}: {l}"),
                        None => code,
                    })
                }
            }
            RunEnd::TimedOut => Err(format!(
                "still running after {}; killed",
                crate::clock::human(timeout)
            )),
            RunEnd::SpawnFailed(e) => Err(format!("cannot start {:?}: {e}", self.program.program)),
        }
    }
}

/// A verifier backed by a closure.
pub struct FnVerifier<F> {
    name: String,
    f: F,
}

impl<F> std::fmt::Debug for FnVerifier<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnVerifier")
            .field("name", &self.name)
            .finish()
    }
}

impl<F: FnMut(Duration) -> Result<String, String>> FnVerifier<F> {
    /// A verifier calling `f` with the timeout.
    pub fn new(name: impl Into<String>, f: F) -> Self {
        Self {
            name: name.into(),
            f,
        }
    }
}

impl<F: FnMut(Duration) -> Result<String, String>> Verifier for FnVerifier<F> {
    fn describe(&self) -> String {
        format!("closure `{}`", self.name)
    }
    fn verify(&mut self, timeout: Duration) -> Result<String, String> {
        (self.f)(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_verifier_reports_failure_line() {
        let mut v = CommandVerifier::shell("echo '[FAIL] 1.2.1 anonymous-auth' >&2; exit 1");
        assert_eq!(
            v.verify(Duration::from_secs(5)),
            Err("exit code 1: [FAIL] 1.2.1 anonymous-auth".to_owned())
        );
        let mut v = CommandVerifier::new("sleep").arg("10");
        assert!(
            v.verify(Duration::from_millis(100))
                .unwrap_err()
                .contains("killed")
        );
    }

    #[test]
    fn a_timed_out_command_is_killed_with_its_children() {
        // `sh -c` runs the verify command's programs as its children; killing
        // only the shell would leave them running after "killed".
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let mut v = CommandVerifier::shell(script);
        let err = v.verify(Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("killed"), "{err}");
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let root = crate::witness::procfs::default_root();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match crate::witness::procfs::read_process(&root, pid) {
                Err(_) => break,
                Ok(p) if p.is_dead() => break,
                Ok(p) => assert!(
                    std::time::Instant::now() < deadline,
                    "the command's child {pid} outlived the timeout: {p:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn closure_verifier() {
        let mut v = FnVerifier::new("ok", |_t: Duration| Ok("fine".to_owned()));
        assert_eq!(v.verify(Duration::from_secs(1)), Ok("fine".to_owned()));
        assert_eq!(v.describe(), "closure `ok`");
    }
}
