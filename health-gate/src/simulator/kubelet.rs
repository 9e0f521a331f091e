//! A kubelet-like watcher of one static-pod manifest.

use std::fs::OpenOptions;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::SimError;
use crate::change::file_replace::{container_argv, decode};

/// How the kubelet simulator stops a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopSignal {
    /// SIGKILL at once.
    Kill,
    /// SIGTERM, then SIGKILL after the grace period.
    Term {
        /// The grace period.
        grace: Duration,
    },
}

/// Settings of a [`KubeletSim`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KubeletConfig {
    /// The static-pod manifest to watch.
    pub manifest: PathBuf,
    /// The executable run for the pod's container (e.g. the
    /// `kubesafe-sim-apiserver` binary, or a binary that calls
    /// [`dispatch_by_argv0`](super::dispatch_by_argv0)). It is started
    /// through a symlink named after the manifest's `command[0]` (e.g.
    /// `kube-apiserver`), so `/proc/PID/comm` and `argv[0]` look real.
    pub server_executable: PathBuf,
    /// Where the symlink (`bin/`), the container log (`<name>.log`) and the
    /// simulator's own log (`kubelet.log`) go.
    pub work_dir: PathBuf,
    /// The container whose command runs (default: the first).
    pub container: Option<String>,
    /// How often the manifest's bytes are read (default 5 ms).
    pub watch_interval: Duration,
    /// Delay between seeing a changed pod and stopping the old server (the
    /// real kubelet's file check period and sync; default 0).
    pub sync_delay: Duration,
    /// Delay between the old server's exit and the new one's start (default
    /// 100 ms).
    pub restart_delay: Duration,
    /// First back-off after a crash (default 100 ms), doubled after each
    /// crash up to [`crash_backoff_max`](Self::crash_backoff_max), like
    /// CrashLoopBackOff (whose real values are 10 s doubling to 5 min).
    pub crash_backoff_initial: Duration,
    /// Cap of the crash back-off (default 1 s).
    pub crash_backoff_max: Duration,
    /// A server that ran this long before exiting resets the back-off
    /// (default 10 s).
    pub crash_backoff_reset: Duration,
    /// How servers are stopped (default SIGKILL).
    pub stop_signal: StopSignal,
}

impl KubeletConfig {
    /// Settings with the defaults above.
    #[must_use]
    pub fn new(
        manifest: impl Into<PathBuf>,
        server_executable: impl Into<PathBuf>,
        work_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            manifest: manifest.into(),
            server_executable: server_executable.into(),
            work_dir: work_dir.into(),
            container: None,
            watch_interval: Duration::from_millis(5),
            sync_delay: Duration::ZERO,
            restart_delay: Duration::from_millis(100),
            crash_backoff_initial: Duration::from_millis(100),
            crash_backoff_max: Duration::from_secs(1),
            crash_backoff_reset: Duration::from_secs(10),
            stop_signal: StopSignal::Kill,
        }
    }

    /// Sets [`sync_delay`](Self::sync_delay).
    #[must_use]
    pub fn sync_delay(mut self, d: Duration) -> Self {
        self.sync_delay = d;
        self
    }

    /// Sets [`restart_delay`](Self::restart_delay).
    #[must_use]
    pub fn restart_delay(mut self, d: Duration) -> Self {
        self.restart_delay = d;
        self
    }

    /// Sets the crash back-off (initial, cap).
    #[must_use]
    pub fn crash_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.crash_backoff_initial = initial;
        self.crash_backoff_max = max.max(initial);
        self
    }

    /// Sets [`stop_signal`](Self::stop_signal).
    #[must_use]
    pub fn stop_signal(mut self, s: StopSignal) -> Self {
        self.stop_signal = s;
        self
    }

    /// Sets [`container`](Self::container).
    #[must_use]
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = Some(name.into());
        self
    }
}

/// What the kubelet simulator has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubeletStatus {
    /// The running server's pid.
    pub pid: Option<u32>,
    /// Servers started.
    pub starts: u32,
    /// Servers that exited on their own.
    pub crashes: u32,
    /// Servers stopped because the pod changed.
    pub pod_restarts: u32,
    /// Hash of the decoded pod being run.
    pub pod_hash: Option<u64>,
    /// How the last server exited.
    pub last_exit: Option<String>,
}

/// A SIMULATION of the kubelet's static-pod handling, for one manifest:
///
/// * reads the manifest's bytes every few milliseconds; decodes changed
///   bytes as YAML and hashes the *decoded* pod, so a comment- or
///   formatting-only edit restarts nothing (like the real kubelet, whose
///   config hash covers the pod object);
/// * on a changed hash, stops the server (after
///   [`sync_delay`](KubeletConfig::sync_delay)) and starts the new command
///   line after [`restart_delay`](KubeletConfig::restart_delay);
/// * restarts a server that exits on its own with a doubling back-off
///   (CrashLoopBackOff, short delays);
/// * an undecodable manifest stops the pod until a valid one appears.
///
/// The server runs as a separate process with the container's `command` +
/// `args` as its argv. Stopping or dropping the simulator kills it.
#[derive(Debug)]
pub struct KubeletSim {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    work_dir: PathBuf,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    status: Mutex<KubeletStatus>,
}

impl KubeletSim {
    /// Starts watching. The current manifest's pod starts at once.
    ///
    /// # Errors
    /// When the work directory cannot be created or the server executable
    /// does not exist.
    pub fn start(config: KubeletConfig) -> Result<Self, SimError> {
        for dir in [config.work_dir.clone(), config.work_dir.join("bin")] {
            std::fs::create_dir_all(&dir).map_err(|source| SimError::Io { path: dir, source })?;
        }
        if !config.server_executable.is_file() {
            return Err(SimError::Config(format!(
                "server executable {} does not exist",
                config.server_executable.display()
            )));
        }
        let shared = Arc::new(Shared::default());
        let work_dir = config.work_dir.clone();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kubelet-sim".to_owned())
            .spawn(move || Runner::new(config, thread_shared).run())
            .map_err(|source| SimError::Io {
                path: work_dir.clone(),
                source,
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
            work_dir,
        })
    }

    /// A snapshot of what it has done.
    #[must_use]
    pub fn status(&self) -> KubeletStatus {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Waits until `pred` holds for the status, up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&KubeletStatus) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.status()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The simulator's own log and the container log, for test failure
    /// messages.
    #[must_use]
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.work_dir) {
            let mut paths: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            paths.sort();
            for p in paths {
                out.push_str(&format!("==> {} <==\n", p.display()));
                out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
        out
    }

    /// Stops watching and kills the server.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for KubeletSim {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Desired {
    hash: u64,
    argv: Vec<String>,
}

struct Runner {
    cfg: KubeletConfig,
    shared: Arc<Shared>,
    last_bytes: Option<Vec<u8>>,
    desired: Option<Desired>,
    running_hash: Option<u64>,
    child: Option<(Child, Instant)>,
    pending_since: Option<Instant>,
    next_start: Option<Instant>,
    backoff: Duration,
}

impl Runner {
    fn new(cfg: KubeletConfig, shared: Arc<Shared>) -> Self {
        let backoff = cfg.crash_backoff_initial;
        Self {
            cfg,
            shared,
            last_bytes: None,
            desired: None,
            running_hash: None,
            child: None,
            pending_since: None,
            next_start: None,
            backoff,
        }
    }

    fn log(&self, msg: &str) {
        tracing::debug!(target: "kubesafe_health_gate::simulator::kubelet", "{msg}");
        let path = self.cfg.work_dir.join("kubelet.log");
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{:?} {msg}", std::time::SystemTime::now());
        }
    }

    fn update_status(&self, f: impl FnOnce(&mut KubeletStatus)) {
        if let Ok(mut s) = self.shared.status.lock() {
            f(&mut s);
        }
    }

    fn run(mut self) {
        let mut first = true;
        while !self.shared.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            self.read_manifest(now, first);
            first = false;
            self.apply_pending(now);
            self.reap(now);
            self.maybe_start(now);
            std::thread::sleep(self.cfg.watch_interval);
        }
        self.stop_child("kubelet simulator stopping");
    }

    fn read_manifest(&mut self, now: Instant, first: bool) {
        let bytes = std::fs::read(&self.cfg.manifest).ok();
        if bytes == self.last_bytes && !first {
            return;
        }
        self.last_bytes = bytes.clone();
        self.desired = match bytes.as_deref().map(decode) {
            None => {
                self.log("manifest missing: pod removed");
                None
            }
            Some(Err(e)) => {
                self.log(&format!("manifest does not decode ({e}): pod removed"));
                None
            }
            Some(Ok(pod)) => match container_argv(&pod, self.cfg.container.as_deref()) {
                Some(argv) if !argv.is_empty() => {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    pod.to_string().hash(&mut h);
                    Some(Desired {
                        hash: h.finish(),
                        argv,
                    })
                }
                _ => {
                    self.log("manifest has no container command: pod removed");
                    None
                }
            },
        };
        let desired_hash = self.desired.as_ref().map(|d| d.hash);
        if first {
            self.running_hash = desired_hash;
            self.next_start = desired_hash.map(|_| now);
            self.update_status(|s| s.pod_hash = desired_hash);
        } else if desired_hash != self.running_hash {
            self.log(&format!(
                "pod changed: hash {:?} -> {desired_hash:?}",
                self.running_hash
            ));
            self.pending_since.get_or_insert(now);
        } else {
            if self.pending_since.take().is_some() {
                self.log("pod changed back before it was synced: nothing to do");
            }
            self.log("manifest bytes changed, decoded pod unchanged: no restart");
        }
    }

    fn apply_pending(&mut self, now: Instant) {
        let Some(since) = self.pending_since else {
            return;
        };
        if now < since + self.cfg.sync_delay {
            return;
        }
        self.pending_since = None;
        let had_child = self.child.is_some();
        self.stop_child("pod changed");
        if had_child {
            self.update_status(|s| s.pod_restarts += 1);
        }
        self.running_hash = self.desired.as_ref().map(|d| d.hash);
        let hash = self.running_hash;
        self.update_status(|s| s.pod_hash = hash);
        self.backoff = self.cfg.crash_backoff_initial;
        self.next_start = self
            .desired
            .as_ref()
            .map(|_| Instant::now() + self.cfg.restart_delay);
    }

    fn reap(&mut self, now: Instant) {
        let Some((child, started)) = self.child.as_mut() else {
            return;
        };
        let status = match child.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => return,
            Err(e) => {
                self.log(&format!("wait failed: {e}"));
                return;
            }
        };
        let ran = now.saturating_duration_since(*started);
        let pid = child.id();
        self.child = None;
        if ran >= self.cfg.crash_backoff_reset {
            self.backoff = self.cfg.crash_backoff_initial;
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.crash_backoff_max);
        self.next_start = Some(now + delay);
        let exit = format!("pid {pid} exited with {status} after {ran:?}");
        self.log(&format!("{exit}; back-off {delay:?}"));
        self.update_status(|s| {
            s.pid = None;
            s.crashes += 1;
            s.last_exit = Some(exit);
        });
    }

    fn maybe_start(&mut self, now: Instant) {
        if self.child.is_some() || self.pending_since.is_some() {
            return;
        }
        let Some(at) = self.next_start else { return };
        if now < at {
            return;
        }
        let Some(desired) = self.desired.as_ref() else {
            self.next_start = None;
            return;
        };
        if Some(desired.hash) != self.running_hash {
            return;
        }
        let argv = desired.argv.clone();
        match self.spawn(&argv) {
            Ok(child) => {
                let pid = child.id();
                self.log(&format!("started pid {pid}: {}", argv.join(" ")));
                self.child = Some((child, Instant::now()));
                self.next_start = None;
                self.update_status(|s| {
                    s.pid = Some(pid);
                    s.starts += 1;
                });
            }
            Err(e) => {
                self.log(&format!("cannot start {:?}: {e}", argv.first()));
                self.next_start = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(self.cfg.crash_backoff_max);
            }
        }
    }

    fn spawn(&self, argv: &[String]) -> std::io::Result<Child> {
        let name = argv
            .first()
            .map(|a| {
                Path::new(a)
                    .file_name()
                    .map_or_else(|| a.clone(), |n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "server".to_owned());
        let link = self.cfg.work_dir.join("bin").join(&name);
        if std::fs::read_link(&link).ok().as_deref() != Some(self.cfg.server_executable.as_path()) {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&self.cfg.server_executable, &link)?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.cfg.work_dir.join(format!("{name}.log")))?;
        let mut cmd = Command::new(&link);
        cmd.args(argv.get(1..).unwrap_or_default())
            .env(super::SIMULATION_ENV, "1")
            .env(super::SIM_PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        cmd.spawn()
    }

    fn stop_child(&mut self, why: &str) {
        let Some((mut child, _)) = self.child.take() else {
            return;
        };
        let pid = child.id();
        match self.cfg.stop_signal {
            StopSignal::Kill => {
                let _ = child.kill();
            }
            StopSignal::Term { grace } => {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_child(&child),
                    rustix::process::Signal::TERM,
                );
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    if matches!(child.try_wait(), Ok(Some(_))) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = child.kill();
            }
        }
        let status = child.wait();
        self.log(&format!("stopped pid {pid} ({why}): {status:?}"));
        self.update_status(|s| s.pid = None);
    }
}
