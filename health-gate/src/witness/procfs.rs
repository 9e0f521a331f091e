//! Reading processes from `/proc`: name, command line and start time.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::clock::BootInstant;

/// Linux truncates `/proc/PID/comm` to 15 bytes.
pub const COMM_LEN: usize = 15;

/// One process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// `/proc/PID/comm` (at most 15 bytes).
    pub comm: String,
    /// `/proc/PID/cmdline`, split at NUL bytes (lossy UTF-8).
    pub argv: Vec<String>,
    /// Field 22 of `/proc/PID/stat`: start time in clock ticks since boot.
    pub start_ticks: u64,
    /// Field 3 of `/proc/PID/stat` (`R`, `S`, `Z`, ...).
    pub state: char,
}

impl ProcessInfo {
    /// The start time on the boot-time clock.
    #[must_use]
    pub fn started(&self, ticks_per_second: u64) -> BootInstant {
        BootInstant::from_ticks(self.start_ticks, ticks_per_second)
    }

    /// The start time as wall-clock time, from `/proc/stat`'s `btime` (whole
    /// seconds, so up to one second early). For display; comparisons use
    /// [`started`](Self::started).
    #[must_use]
    pub fn started_at(&self, boot: SystemTime, ticks_per_second: u64) -> SystemTime {
        boot + Duration::from_nanos(self.started(ticks_per_second).as_nanos())
    }

    /// Whether the process is a zombie or dead (exited, not yet reaped).
    #[must_use]
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// The basename of `argv[0]`.
    #[must_use]
    pub fn argv0_basename(&self) -> Option<&str> {
        let a0 = self.argv.first()?;
        Some(a0.rsplit('/').next().unwrap_or(a0))
    }
}

/// `sysconf(_SC_CLK_TCK)`: the unit of `/proc/PID/stat` times.
#[must_use]
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// The boot time from the `btime` line of `/proc/stat` (whole seconds).
///
/// # Errors
/// When `/proc/stat` cannot be read or has no `btime` line.
pub fn boot_time(proc_root: &Path) -> io::Result<SystemTime> {
    let text = std::fs::read_to_string(proc_root.join("stat"))?;
    let secs = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no btime in /proc/stat"))?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Parses `/proc/PID/stat`: returns (comm, state, start ticks). The comm
/// field may itself contain spaces and parentheses, so fields are counted
/// after the LAST `)`.
#[must_use]
pub fn parse_stat(stat: &str) -> Option<(String, char, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest = stat.get(close + 1..)?;
    let mut fields = rest.split_ascii_whitespace();
    // Field 3 is the first after ")", field 22 is the 20th.
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((comm, state, start))
}

/// Reads one process. Errors when it vanished meanwhile.
///
/// # Errors
/// The I/O error of reading `/proc/PID/...`, or `InvalidData` for an
/// unparsable `stat`.
pub fn read_process(proc_root: &Path, pid: u32) -> io::Result<ProcessInfo> {
    let dir = proc_root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat"))?;
    let (comm_stat, state, start_ticks) = parse_stat(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable stat"))?;
    let comm = std::fs::read_to_string(dir.join("comm"))
        .map(|c| c.trim_end_matches('\n').to_owned())
        .unwrap_or(comm_stat);
    let argv = read_cmdline(&dir)?;
    Ok(ProcessInfo {
        pid,
        comm,
        argv,
        start_ticks,
        state,
    })
}

fn read_cmdline(dir: &Path) -> io::Result<Vec<String>> {
    let raw = std::fs::read(dir.join("cmdline"))?;
    let raw = raw.strip_suffix(b"\0").unwrap_or(&raw);
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    Ok(raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

/// Whether a process called `comm` with command line `argv` is the component
/// `name`: its comm equals `name` truncated to 15 bytes, or the basename of
/// its `argv[0]` equals `name`.
#[must_use]
pub fn name_matches(name: &str, comm: &str, argv: &[String]) -> bool {
    let truncated = truncate_comm(name);
    if comm == truncated {
        return true;
    }
    argv.first()
        .map(|a0| a0.rsplit('/').next().unwrap_or(a0) == name)
        .unwrap_or(false)
}

fn truncate_comm(name: &str) -> &str {
    if name.len() <= COMM_LEN {
        return name;
    }
    let mut end = COMM_LEN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or(name)
}

/// Lists the live (not zombie) processes named `name`.
///
/// Cheap on the common path: only `comm` is read for processes that cannot
/// match; `cmdline` and `stat` only for candidates. Processes that vanish
/// during the scan are skipped.
///
/// # Errors
/// When `proc_root` itself cannot be listed.
pub fn find_by_name(proc_root: &Path, name: &str) -> io::Result<Vec<ProcessInfo>> {
    let truncated = truncate_comm(name);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let comm_ok = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim_end_matches('\n') == truncated)
            .unwrap_or(false);
        if !comm_ok {
            // argv[0] may still name it (a renamed thread leader, a name
            // longer than comm, a launcher that set argv[0]).
            let Ok(argv) = read_cmdline(&dir) else {
                continue;
            };
            if !name_matches(name, "", &argv) {
                continue;
            }
        }
        match read_process(proc_root, pid) {
            Ok(info) if !info.is_dead() && name_matches(name, &info.comm, &info.argv) => {
                found.push(info);
            }
            _ => {}
        }
    }
    found.sort_by_key(|p| (p.start_ticks, p.pid));
    Ok(found)
}

/// The network namespace of a process: the target of `/proc/PID/ns/net`,
/// e.g. `net:[4026531840]`. Reading it takes the privileges to inspect the
/// process (same user, or root).
///
/// # Errors
/// When the link cannot be read (process gone, no privileges).
pub fn net_namespace(proc_root: &Path, pid: u32) -> io::Result<String> {
    read_link_text(&proc_root.join(pid.to_string()).join("ns/net"))
}

/// The network namespace of the process reading `proc_root`
/// (`/proc/self/ns/net`).
///
/// # Errors
/// When the link cannot be read.
pub fn own_net_namespace(proc_root: &Path) -> io::Result<String> {
    read_link_text(&proc_root.join("self/ns/net"))
}

fn read_link_text(path: &Path) -> io::Result<String> {
    Ok(std::fs::read_link(path)?.to_string_lossy().into_owned())
}

/// The default `/proc` mount.
#[must_use]
pub fn default_root() -> PathBuf {
    PathBuf::from("/proc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let stat = "4242 (kube (api) srv) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 12 0 987654 1000000 500 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let (comm, state, start) = parse_stat(stat).unwrap();
        assert_eq!(comm, "kube (api) srv");
        assert_eq!(state, 'S');
        assert_eq!(start, 987_654);
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(parse_stat("1 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn names_match_by_comm_or_argv0() {
        let argv = vec!["/usr/local/bin/kube-controller-manager".to_owned()];
        assert!(name_matches(
            "kube-controller-manager",
            "kube-controller",
            &argv
        ));
        assert!(name_matches(
            "kube-controller-manager",
            "kube-controller",
            &[]
        ));
        assert!(name_matches(
            "kube-apiserver",
            "whatever",
            &["kube-apiserver".to_owned()]
        ));
        assert!(!name_matches("kube-apiserver", "kube-scheduler", &[]));
        assert!(!name_matches(
            "kube",
            "kube-apiserver",
            &["kube-apiserver".to_owned()]
        ));
    }

    #[test]
    fn network_namespaces_read_like_the_kernel_writes_them() {
        let root = default_root();
        let own = own_net_namespace(&root).unwrap();
        assert!(own.starts_with("net:["), "{own}");
        assert_eq!(net_namespace(&root, std::process::id()).unwrap(), own);
    }

    #[test]
    fn finds_this_test_process_with_a_plausible_start_time() {
        let root = default_root();
        let me = read_process(&root, std::process::id()).unwrap();
        let hz = clock_ticks_per_second();
        assert!(hz > 0);
        assert!(me.started(hz) <= BootInstant::now());
        let found = find_by_name(&root, &me.comm).unwrap();
        assert!(found.iter().any(|p| p.pid == me.pid), "{found:?}");
        let boot = boot_time(&root).unwrap();
        let started = me.started_at(boot, hz);
        let now = SystemTime::now();
        assert!(started <= now + Duration::from_secs(2));
        assert!(now.duration_since(started).unwrap_or_default() < Duration::from_secs(24 * 3600));
    }
}
