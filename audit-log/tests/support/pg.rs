//! A throwaway PostgreSQL server for tests and benchmarks.
//!
//! Finds `initdb` and `postgres` under `/usr/lib/postgresql/*/bin` (highest version) or
//! on `PATH`, runs `initdb` into a fresh temporary directory and starts `postgres` on a
//! unix socket in that directory only (`listen_addresses=''`). PostgreSQL refuses to
//! run as root: when the effective uid is 0, the directory is chowned to the `postgres`
//! user (created by Debian's package) and both programs run as that user through
//! `setpriv`. The server is stopped when the guard drops (also while unwinding from a
//! failed assertion), and `--pdeathsig` kills it if the test process dies without
//! unwinding. Under `CI=true` a missing PostgreSQL is a failure, else a skip.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TempPostgres {
    dir: PathBuf,
    child: Option<Child>,
    bin: PathBuf,
    as_postgres: bool,
}

fn find_bin_dir() -> Option<PathBuf> {
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    candidates.sort();
    if let Some((_, bin)) = candidates.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").exists() && d.join("postgres").exists())
}

fn euid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

impl TempPostgres {
    /// Starts a server, or returns `None` (skip) when PostgreSQL is not installed and
    /// `CI` is not `true`. `fsync` chooses the server's `fsync` setting (off makes
    /// functional tests faster; benchmarks keep it on).
    pub fn start(fsync: bool) -> Option<TempPostgres> {
        let Some(bin) = find_bin_dir() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "PostgreSQL (initdb/postgres) not found on PATH or under /usr/lib/postgresql/*/bin; CI=true requires it (apt-get install postgresql)"
                );
            }
            eprintln!(
                "NOTICE: PostgreSQL not installed; skipping PostgreSQL test (install the `postgresql` package)"
            );
            return None;
        };
        let as_postgres = euid_is_root();
        let dir = std::env::temp_dir().join(format!(
            "kubesafe-audit-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut pg = TempPostgres {
            dir: dir.clone(),
            child: None,
            bin,
            as_postgres,
        };
        if as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(
                st.success(),
                "chown of {} to postgres failed",
                dir.display()
            );
        }
        let out = pg
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cmd = pg.command("postgres");
        cmd.arg("-D")
            .arg(dir.join("data"))
            .arg("-k")
            .arg(&dir)
            .args(["-c", "listen_addresses="])
            .args(["-c", if fsync { "fsync=on" } else { "fsync=off" }])
            .args(["-c", "max_connections=20", "-c", "shared_buffers=32MB"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("server.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            );
        pg.child = Some(cmd.spawn().unwrap());
        // Wait until it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if postgres::Client::connect(&pg.params(), postgres::NoTls).is_ok() {
                break;
            }
            if let Some(status) = pg.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("postgres exited during startup: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(pg)
    }

    /// A command for a PostgreSQL program, as the `postgres` user when we are root, with
    /// `--pdeathsig` so it dies with the test process.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("setpriv");
        if self.as_postgres {
            cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
        }
        cmd.args(["--pdeathsig=KILL", "--"])
            .arg(self.bin.join(program));
        cmd.current_dir(&self.dir);
        cmd
    }

    /// libpq-style connection parameters.
    pub fn params(&self) -> String {
        format!("host={} user=postgres dbname=postgres", self.dir.display())
    }

    pub fn connect(&self) -> postgres::Client {
        postgres::Client::connect(&self.params(), postgres::NoTls).unwrap()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fast shutdown, then make sure.
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-t", "20", "-D"])
                .arg(self.dir.join("data"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
