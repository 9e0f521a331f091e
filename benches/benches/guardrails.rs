//! Pod Security `check` throughput over the whole upstream fixture corpus
//! (4,537 pods: `../shared/corpus/pss/testdata`, every level and version).
//!
//! There is no in-process peer for an offline Pod Security checker, and the
//! upstream Go library cannot be measured here (no Go toolchain). So every
//! figure is set against trivial baselines measured in the same run on the
//! same documents:
//! - `yaml_parse`: reading the YAML into JSON values (what any tool must do first);
//! - `walk`: visiting every node of the parsed values once.
//!
//! Groups (throughput in pods/s):
//! - `check_parsed`: `check` on pre-parsed values, parsing excluded;
//! - `parse_and_check`: YAML parse + `check`, parsing included;
//! - `yaml_parse`, `walk`: the baselines.
//!
//! File reading is excluded everywhere (texts are loaded before measuring).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kubesafe_guardrails::pss::{Level, PolicyVersion, check};
use kubesafe_guardrails::yaml;
use serde_json::Value;

struct Fixture {
    text: String,
    value: Value,
    level: Level,
    version: PolicyVersion,
}

fn load() -> Vec<Fixture> {
    let corpus = match std::env::var_os("KUBESAFE_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
    };
    let root = corpus.join("pss/testdata");
    let mut out = Vec::new();
    for (name, level) in [
        ("baseline", Level::Baseline),
        ("restricted", Level::Restricted),
    ] {
        let Ok(versions) = std::fs::read_dir(root.join(name)) else {
            eprintln!("corpus missing at {}; set KUBESAFE_CORPUS", root.display());
            return out;
        };
        let mut versions: Vec<_> = versions.map(|e| e.unwrap().path()).collect();
        versions.sort();
        for vdir in versions {
            let version: PolicyVersion =
                vdir.file_name().unwrap().to_str().unwrap().parse().unwrap();
            for outcome in ["pass", "fail"] {
                let mut files: Vec<_> = std::fs::read_dir(vdir.join(outcome))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect();
                files.sort();
                for f in files {
                    let text = std::fs::read_to_string(&f).unwrap();
                    let value = yaml::from_str(&text).unwrap();
                    out.push(Fixture {
                        text,
                        value,
                        level,
                        version,
                    });
                }
            }
        }
    }
    out
}

fn count_nodes(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(count_nodes).sum::<usize>(),
        Value::Object(m) => 1 + m.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

fn bench(c: &mut Criterion) {
    let fixtures = load();
    if fixtures.is_empty() {
        return;
    }
    let mut g = c.benchmark_group("pss_corpus");
    g.throughput(Throughput::Elements(fixtures.len() as u64));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(6));
    g.bench_function("check_parsed", |b| {
        b.iter(|| {
            let mut denied = 0usize;
            for f in &fixtures {
                denied += usize::from(
                    !check(black_box(&f.value), f.level, f.version)
                        .unwrap()
                        .is_empty(),
                );
            }
            denied
        })
    });
    g.bench_function("parse_and_check", |b| {
        b.iter(|| {
            let mut denied = 0usize;
            for f in &fixtures {
                let v: Value = yaml::from_str(black_box(&f.text)).unwrap();
                denied += usize::from(!check(&v, f.level, f.version).unwrap().is_empty());
            }
            denied
        })
    });
    g.bench_function("yaml_parse", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for f in &fixtures {
                let v: Value = yaml::from_str(black_box(&f.text)).unwrap();
                n += usize::from(v.is_object());
            }
            n
        })
    });
    g.bench_function("walk", |b| {
        b.iter(|| {
            fixtures
                .iter()
                .map(|f| count_nodes(black_box(&f.value)))
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
