//! Detection latency of the health gate against a fixed 2 s poll, on the
//! node simulator (a real HTTPS server, run as a separate process by a
//! kubelet-like watcher). A small harness rather than criterion: each sample
//! is an end-to-end restart taking seconds, and the figure of interest is the
//! distribution of one latency, not a per-iteration time.
//!
//! Latency = the instant the gate's settle window completes (minimum window:
//! one healthy probe) − the instant the restarted server first answers
//! healthy (the server writes it to its ready file), both on
//! CLOCK_MONOTONIC. The server's startup delay is drawn uniformly from
//! [0, 2 s) per sample, so the fixed poll meets the server at a random phase
//! (its expected latency is ~1 s).
//!
//! Run: `cargo bench -p kubesafe-benches --bench health_gate`
//! (`KUBESAFE_BENCH_SAMPLES=N` changes the number of samples per method,
//! default 20).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubesafe_health_gate::clock::monotonic_nanos;
use kubesafe_health_gate::outcome::EventKind;
use kubesafe_health_gate::simulator::{SimNode, dispatch_by_argv0};
use kubesafe_health_gate::witness::ProcessWitness;
use kubesafe_health_gate::{BackoffPolicy, FileReplace, GatePolicy, Transaction};

fn main() -> ExitCode {
    // Re-executed by the kubelet simulator as `kube-apiserver`.
    if let Some(code) = dispatch_by_argv0() {
        return code;
    }
    let samples: usize = std::env::var("KUBESAFE_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = SimNode::builder(dir.path(), exe)
        .ready_file(true)
        .restart_delay(Duration::from_millis(50))
        .start()
        .unwrap();
    node.wait_until_healthy(Duration::from_secs(30)).unwrap();

    let methods: [(&str, BackoffPolicy); 2] = [
        ("kubesafe default back-off", BackoffPolicy::default()),
        (
            "fixed 2 s poll",
            BackoffPolicy::fixed(Duration::from_secs(2)).unwrap(),
        ),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    let mut seed = monotonic_nanos() | 1;
    for i in 0..samples {
        // Alternate the order so drift affects both alike.
        let order: [usize; 2] = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for m in order {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let startup_ms = seed % 2000;
            let latency = sample(&node, methods[m].1, startup_ms, i * 2 + m);
            results[m].push(latency);
            eprintln!(
                "sample {i:>2} {:<26} startup {startup_ms:>4} ms  latency {latency:>7.1} ms",
                methods[m].0
            );
        }
    }

    println!();
    println!("detection latency, ms ({samples} samples each, same run):");
    println!(
        "{:<26} {:>8} {:>8} {:>8} {:>8}",
        "method", "median", "mean", "p90", "max"
    );
    let mut medians = Vec::new();
    for (m, (name, _)) in methods.iter().enumerate() {
        let mut v = results[m].clone();
        v.sort_by(f64::total_cmp);
        let median = percentile(&v, 0.5);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "{name:<26} {median:>8.1} {mean:>8.1} {:>8.1} {:>8.1}",
            percentile(&v, 0.9),
            v.last().copied().unwrap_or(0.0)
        );
        medians.push((median, mean));
    }
    println!(
        "ratio fixed-2s / kubesafe: median {:.1}x, mean {:.1}x",
        medians[1].0 / medians[0].0,
        medians[1].1 / medians[0].1
    );
    node.stop();
    ExitCode::SUCCESS
}

/// One restart: change a flag (and the startup delay), gate with the
/// smallest settle window, return the detection latency in ms.
fn sample(node: &SimNode, backoff: BackoffPolicy, startup_ms: u64, n: usize) -> f64 {
    let ready = node.ready_file().unwrap().to_owned();
    let _ = std::fs::remove_file(&ready);
    let new = node.manifest_with(&[
        &format!("--sim-startup-delay={startup_ms}ms"),
        &format!("--event-ttl={n}h"),
    ]);
    let verdict = Arc::new(Mutex::new(None));
    let v = Arc::clone(&verdict);
    let probe = node
        .probe("/readyz")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let witness = ProcessWitness::new("kube-apiserver")
        .select_flag("--bind-address", node.address().to_string())
        .select_flag("--secure-port", node.port().to_string());
    let outcome = Transaction::new(FileReplace::new(node.manifest_path(), new), probe)
        .witness(witness)
        .policy(
            GatePolicy::default()
                .preflight(None)
                .deadline(Duration::from_secs(20))
                .settle(Duration::ZERO, 1)
                .backoff(backoff),
        )
        .on_event(move |e| {
            if matches!(e.kind, EventKind::Settled { .. }) {
                *v.lock().unwrap() = Some(monotonic_nanos());
            }
        })
        .run();
    assert!(outcome.is_applied(), "{outcome}\n{}", node.kubelet().logs());
    let settled = verdict.lock().unwrap().expect("settled event");
    let ready_ns: u64 = std::fs::read_to_string(&ready)
        .expect("ready file")
        .trim()
        .parse()
        .unwrap();
    (settled.saturating_sub(ready_ns)) as f64 / 1e6
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}
