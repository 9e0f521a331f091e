//! Running a program with a timeout, shared by the command probe and the
//! command verifier.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keep at most this much of each output stream.
const KEEP: usize = 16 * 1024;

/// A program and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) env: Vec<(OsString, OsString)>,
}

impl Program {
    pub(crate) fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
        }
    }

    pub(crate) fn describe(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// How a run ended.
#[derive(Debug)]
pub(crate) enum RunEnd {
    /// The program exited.
    Exited {
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    /// It was still running at the timeout and was killed.
    TimedOut,
    /// It could not be started.
    SpawnFailed(std::io::Error),
}

/// Runs `program`, killing it (SIGKILL) if it outlives `timeout` — it and
/// every process it started: it runs as the leader of its own process group,
/// and the whole group is killed (a `sh -c` verify command's programs are
/// the shell's children).
pub(crate) fn run(program: &Program, timeout: Duration) -> RunEnd {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&program.program);
    cmd.args(&program.args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &program.cwd {
        cmd.current_dir(cwd);
    }
    for (k, v) in &program.env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return RunEnd::SpawnFailed(e),
    };
    let out = child.stdout.take().map(spawn_reader);
    let err = child.stderr.take().map(spawn_reader);
    // No deadline when the timeout does not fit the clock (never panic).
    let deadline = Instant::now().checked_add(timeout);
    let mut sleep = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        let now = Instant::now();
        let left = deadline.map(|d| d.saturating_duration_since(now));
        if left.is_some_and(|l| l.is_zero()) {
            break None;
        }
        std::thread::sleep(left.map_or(sleep, |l| sleep.min(l)));
        sleep = (sleep * 2).min(Duration::from_millis(20));
    };
    let Some(status) = status else {
        // The group id is the child's pid (process_group(0)); the group
        // outlives its leader, so kill the group before reaping the leader.
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::KILL,
        );
        let _ = child.kill();
        let _ = child.wait();
        return RunEnd::TimedOut;
    };
    // A background grandchild may keep the pipes open: wait briefly for the
    // end of the output, then take what was read.
    let drain_until = Instant::now() + Duration::from_millis(100);
    let stdout = out.map(|r| r.collect(drain_until)).unwrap_or_default();
    let stderr = err.map(|r| r.collect(drain_until)).unwrap_or_default();
    RunEnd::Exited {
        status,
        stdout,
        stderr,
    }
}

/// Output read by a background thread.
struct Reader {
    buf: Arc<Mutex<Vec<u8>>>,
    done: Arc<AtomicBool>,
}

impl Reader {
    fn collect(self, until: Instant) -> String {
        while !self.done.load(Ordering::Acquire) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        let bytes = self.buf.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> Reader {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let (b, d) = (Arc::clone(&buf), Arc::clone(&done));
    std::thread::spawn(move || {
        let mut chunk = [0_u8; 4096];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut kept) = b.lock() {
                        kept.extend_from_slice(chunk.get(..n).unwrap_or_default());
                        if kept.len() > 2 * KEEP {
                            let cut = kept.len() - KEEP;
                            kept.drain(..cut);
                        }
                    }
                }
            }
        }
        d.store(true, Ordering::Release);
    });
    Reader { buf, done }
}

/// The last non-empty line of a stream, shortened, for one-line details.
pub(crate) fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}
