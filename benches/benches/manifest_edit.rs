//! kubesafe-manifest-edit benchmarks.
//!
//! 1. In-memory `set --profiling=false` on a kubeadm kube-apiserver manifest (parse, splice,
//!    re-parse and verify, text out) vs the same edit with ruamel.yaml round-trip
//!    (`benches/peers/ruamel_edit.py`, timed in-process by Python, same run).
//! 2. The full safe write (`ManifestFile::apply`: lock, read, edit, hidden temp file, fsync,
//!    rename, directory fsync, re-read and verify; backups off) vs a bare
//!    write + fsync + rename of the same bytes.
//!
//! Criterion prints its statistics; a final "ratios" block times each side again in the
//! same process (median of batches) and prints the ratios recorded in BENCHMARKS.md.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::fs;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::Criterion;
use kubesafe_manifest_edit::{Backup, Edit, FileOptions, Manifest, ManifestFile};

const SAMPLE: &str = include_str!("../../examples/samples/kube-apiserver.yaml");
const SAMPLE_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/samples/kube-apiserver.yaml"
);
const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/ruamel_edit.py");

fn in_memory_set(text: &str) -> String {
    let m = Manifest::parse(text).unwrap();
    m.apply(&Edit::new().set_flag("--profiling", "false"))
        .unwrap()
        .manifest
        .into_text()
}

/// Write `bytes` to a temp file beside `target`, fsync it, rename it over `target`.
fn bare_write(target: &Path, bytes: &[u8]) {
    let tmp = target.with_file_name(".bare.tmp");
    let mut f = fs::File::create(&tmp).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    fs::rename(&tmp, target).unwrap();
}

/// Two manifest versions to alternate, so every write changes the content.
fn versions() -> [String; 2] {
    let a = Manifest::parse(SAMPLE)
        .unwrap()
        .apply(&Edit::new().set_flag("--v", "1"))
        .unwrap()
        .manifest
        .into_text();
    let b = a.replace("--v=1", "--v=2");
    [a, b]
}

struct SafeWrite {
    file: ManifestFile,
    flip: bool,
}

impl SafeWrite {
    fn new(dir: &Path) -> Self {
        let manifests = dir.join("manifests");
        fs::create_dir_all(&manifests).unwrap();
        let path = manifests.join("kube-apiserver.yaml");
        fs::write(&path, &versions()[0]).unwrap();
        let file = ManifestFile::open(&path, FileOptions::new().backup(Backup::Disabled)).unwrap();
        SafeWrite { file, flip: false }
    }

    fn write(&mut self) {
        self.flip = !self.flip;
        let v = if self.flip { "2" } else { "1" };
        let r = self.file.apply(&Edit::new().set_flag("--v", v)).unwrap();
        assert!(r.written);
    }
}

struct BareWrite {
    path: PathBuf,
    versions: [String; 2],
    flip: bool,
}

impl BareWrite {
    fn new(dir: &Path) -> Self {
        let path = dir.join("bare.yaml");
        let versions = versions();
        fs::write(&path, &versions[0]).unwrap();
        BareWrite {
            path,
            versions,
            flip: false,
        }
    }

    fn write(&mut self) {
        self.flip = !self.flip;
        bare_write(&self.path, self.versions[usize::from(self.flip)].as_bytes());
    }
}

/// Median nanoseconds per call of `f`, over `samples` batches of `batch` calls.
fn median_ns(samples: usize, batch: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ruamel_median_ns() -> Option<f64> {
    let out = Command::new("python3")
        .args([PEER, SAMPLE_PATH, "200"])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "ruamel.yaml peer failed (pip install -r benches/peers/requirements.txt): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    println!("peer: {line}");
    v["median_ns"].as_f64()
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();

    {
        let mut g = c.benchmark_group("manifest_edit/in_memory");
        g.bench_function("kubesafe set --profiling=false", |b| {
            b.iter(|| in_memory_set(black_box(SAMPLE)))
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("manifest_edit/write");
        g.sample_size(30);
        let mut safe = SafeWrite::new(&tmp.path().join("safe"));
        g.bench_function("kubesafe safe write", |b| b.iter(|| safe.write()));
        let mut bare = BareWrite::new(tmp.path());
        g.bench_function("bare write+fsync+rename", |b| b.iter(|| bare.write()));
        g.finish();
    }
    c.final_summary();

    // Ratios, measured again side by side in this process.
    println!("\n== ratios (same run, medians) ==");
    let ours = median_ns(31, 200, || {
        black_box(in_memory_set(black_box(SAMPLE)));
    });
    println!("kubesafe in-memory set: {:.1} us", ours / 1e3);
    match ruamel_median_ns() {
        Some(peer) => println!(
            "ruamel.yaml round-trip set: {:.2} ms -> kubesafe is {:.0}x faster (target >= 200x)",
            peer / 1e6,
            peer / ours
        ),
        None => println!("ruamel.yaml peer unavailable: no ratio"),
    }
    let mut safe = SafeWrite::new(&tmp.path().join("safe2"));
    let mut bare = BareWrite::new(&tmp.path().join("bare2").tap_mkdir());
    // Interleave the two so both see the same disk conditions.
    let (mut s, mut b) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        s.push(median_ns(1, 10, || safe.write()));
        b.push(median_ns(1, 10, || bare.write()));
    }
    s.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (s, b) = (s[s.len() / 2], b[b.len() / 2]);
    println!(
        "safe write {:.2} ms vs bare write+fsync+rename {:.2} ms -> {:.2}x (target <= 1.5x)",
        s / 1e6,
        b / 1e6,
        s / b
    );
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        fs::create_dir_all(&self).unwrap();
        self
    }
}
