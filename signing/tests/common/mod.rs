//! Helpers shared by the integration tests: running Node and Python as independent
//! implementations, and a small deterministic PRNG.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Runs `program args...` with `stdin`, returning stdout. When the program is not installed:
/// under `CI=true` the test fails (CI must run the cross-checks); otherwise it is skipped
/// with a printed notice (`None`).
pub fn run_tool(program: &str, args: &[&str], stdin: &[u8]) -> Option<String> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{program} is required under CI=true but is not installed");
            }
            eprintln!("SKIPPED: {program} is not installed; cross-check not run");
            return None;
        }
        Err(e) => panic!("cannot start {program}: {e}"),
    };
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        pipe.write_all(&input).expect("write stdin");
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("stdin writer");
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("utf-8 output"))
}

/// Node: runs `script` (read from `-e`) with `stdin`.
pub fn node(script: &str, stdin: &[u8]) -> Option<String> {
    run_tool("node", &["-e", script], stdin)
}

/// Python 3: runs `script` (via `-c`) with `stdin`.
pub fn python(script: &str, stdin: &[u8]) -> Option<String> {
    run_tool("python3", &["-c", script], stdin)
}

/// xorshift64*: deterministic test data without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
