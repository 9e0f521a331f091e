//! kubesafe-signing: sign and verify a typical action envelope, beside raw HMAC-SHA256 over
//! the same canonical bytes, in the same run.
//!
//! `cargo bench -p kubesafe-benches --bench signing`
//!
//! * `raw_hmac/keyed_per_call`: `Hmac::new_from_slice(key)` + update + `verify_slice` over
//!   the exact MAC input (domain prefix + canonical JSON) — what a hand-written verifier
//!   does per request. The peer for the 3x target.
//! * `raw_hmac/prekeyed`: the same from a cloned pre-keyed state (what the KeyRing does).
//! * `canonicalize`: RFC 8785 form of the envelope without the MAC, alone.
//! * `sign`: `KeyRing::sign_at` (serialise action, canonicalise, MAC).
//! * `verify/no_replay`: canonicalise + MAC + time checks, with a replay store that
//!   accepts everything.
//! * `verify/full`: canonicalise + MAC + time checks + in-memory replay check-and-record
//!   (fresh nonce per envelope; the clock advances so entries expire and are purged).
//! * `verify_bytes`: the JSON wire form parsed (strict parser) and then fully verified.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use kubesafe_signing::{
    Envelope, InMemoryReplayStore, KeyRing, Limits, Nonce, ReplayError, ReplayStore, Secret,
    Verifier,
};
use serde_json::{Value, json};
use sha2::Sha256;

const KEY: [u8; 32] = [0x42; 32];
const START: u64 = 1_700_000_000;

fn typical_action() -> Value {
    json!({
        "type": "scale_deployment",
        "namespace": "shop-production",
        "name": "checkout-api",
        "params": {"replicas": 6},
        "idempotency_key": "7f9c2ba4-e88f-4d2a-9a52-5b1a6c3e0d11",
        "requested_by": "remediation-engine/v2 (alert: HighLatencyP99)"
    })
}

fn ring() -> KeyRing {
    let mut r = KeyRing::new();
    r.insert_active("prod-2024-06", Secret::new(KEY.to_vec()).unwrap())
        .unwrap();
    r
}

fn nonce(i: u64) -> Nonce {
    Nonce::new(format!("n{i:0>21}")).unwrap()
}

struct AcceptAll;

impl ReplayStore for AcceptAll {
    fn check_and_record(&self, _: &str, _: &str, _: u64, _: u64) -> Result<(), ReplayError> {
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let ring = ring();
    let action = typical_action();
    let envelope = ring
        .sign_at(&action, START, Duration::from_secs(300), nonce(0))
        .unwrap();
    let mac_input = envelope.mac_input().unwrap();
    let tag = *envelope.mac();
    eprintln!(
        "MAC input: {} bytes; envelope JSON: {} bytes",
        mac_input.len(),
        envelope.to_json().len()
    );

    let mut g = c.benchmark_group("signing");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60);

    g.bench_function("raw_hmac/keyed_per_call", |b| {
        b.iter(|| {
            let mut mac = Hmac::<Sha256>::new_from_slice(black_box(&KEY)).unwrap();
            mac.update(black_box(&mac_input));
            mac.verify_slice(black_box(&tag)).unwrap();
        });
    });

    let keyed = Hmac::<Sha256>::new_from_slice(&KEY).unwrap();
    g.bench_function("raw_hmac/prekeyed", |b| {
        b.iter(|| {
            let mut mac = keyed.clone();
            mac.update(black_box(&mac_input));
            mac.verify_slice(black_box(&tag)).unwrap();
        });
    });

    g.bench_function("canonicalize", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            black_box(&envelope).write_mac_input(&mut out).unwrap();
            black_box(out.len());
        });
    });

    g.bench_function("sign", |b| {
        b.iter(|| {
            black_box(
                ring.sign_at(
                    black_box(&action),
                    START,
                    Duration::from_secs(300),
                    nonce(1),
                )
                .unwrap(),
            )
        });
    });

    let no_replay = Verifier::new(ring.clone(), AcceptAll);
    g.bench_function("verify/no_replay", |b| {
        b.iter_batched(
            || envelope.clone(),
            |env| black_box(no_replay.verify_at(env, START + 1).unwrap()),
            BatchSize::NumIterations(8),
        );
    });

    // Every envelope gets a fresh nonce, valid for 1 s; the clock advances by 1 s every
    // 10 000 envelopes, so the store holds at most ~20 000 entries and purges as it goes.
    let full =
        Verifier::new(ring.clone(), InMemoryReplayStore::new(1_000_000)).with_skew(Duration::ZERO);
    let counter = Cell::new(0u64);
    let fresh = || {
        let i = counter.get();
        counter.set(i + 1);
        let now = START + i / 10_000;
        let env = ring
            .sign_at(&action, now, Duration::from_secs(1), nonce(i))
            .unwrap();
        (env, now)
    };
    g.bench_function("verify/full", |b| {
        b.iter_batched(
            &fresh,
            |(env, now)| black_box(full.verify_at(env, now).unwrap()),
            BatchSize::NumIterations(8),
        );
    });

    let limits = Limits::default();
    g.bench_function("verify_bytes", |b| {
        b.iter_batched(
            || {
                let (env, now) = fresh();
                (env.to_json(), now)
            },
            |(json, now)| {
                let env = Envelope::from_json(json.as_bytes(), &limits).unwrap();
                black_box(full.verify_at(env, now).unwrap())
            },
            BatchSize::NumIterations(8),
        );
    });
    g.finish();
}

/// The machines are shared and their load changes during a run, so the ratios are also
/// measured interleaved: each round times 2 000 operations of every kind back to back, and
/// the median over rounds of each per-round ratio is printed. Inputs are made in batches of
/// 8 just before they are timed (as a server verifies an envelope it has just parsed), so
/// that the figures measure the work, not cache misses on inputs built long before.
fn interleaved_ratios(_: &mut Criterion) {
    const N: u64 = 2_000;
    const BATCH: u64 = 8;
    const ROUNDS: u64 = 40;
    let ring = ring();
    let action = typical_action();
    let base = ring
        .sign_at(&action, START, Duration::from_secs(300), nonce(0))
        .unwrap();
    let mac_input = base.mac_input().unwrap();
    let tag = *base.mac();
    let keyed = Hmac::<Sha256>::new_from_slice(&KEY).unwrap();
    let no_replay = Verifier::new(ring.clone(), AcceptAll);
    let full =
        Verifier::new(ring.clone(), InMemoryReplayStore::new(1_000_000)).with_skew(Duration::ZERO);
    let limits = Limits::default();
    let counter = Cell::new(0u64);
    let next = || {
        let i = counter.get();
        counter.set(i + 1);
        i
    };
    // ns per operation of `op` over N inputs made by `setup`, BATCH at a time; outputs
    // are dropped after the clock stops (as criterion's `iter_batched` does).
    fn batched<T, U>(mut setup: impl FnMut() -> T, mut op: impl FnMut(T) -> U) -> f64 {
        let mut total = Duration::ZERO;
        let mut inputs = Vec::with_capacity(BATCH as usize);
        let mut outputs = Vec::with_capacity(BATCH as usize);
        for _ in 0..N / BATCH {
            inputs.extend((0..BATCH).map(|_| setup()));
            let t = std::time::Instant::now();
            for input in inputs.drain(..) {
                outputs.push(op(input));
            }
            total += t.elapsed();
            outputs.clear();
        }
        total.as_nanos() as f64 / N as f64
    }
    let mut rows: Vec<[f64; 6]> = Vec::new();
    for round in 0..ROUNDS {
        let now = START + round;
        let fresh = || {
            ring.sign_at(&action, now, Duration::from_secs(1), nonce(next()))
                .unwrap()
        };
        let raw = batched(
            || (),
            |()| {
                let mut mac = Hmac::<Sha256>::new_from_slice(black_box(&KEY)).unwrap();
                mac.update(black_box(&mac_input));
                mac.verify_slice(black_box(&tag)).unwrap();
            },
        );
        let pre = batched(
            || (),
            |()| {
                let mut mac = keyed.clone();
                mac.update(black_box(&mac_input));
                mac.verify_slice(black_box(&tag)).unwrap();
            },
        );
        let nore = batched(
            || base.clone(),
            |env| black_box(no_replay.verify_at(env, START + 1).unwrap()),
        );
        let fullv = batched(fresh, |env| black_box(full.verify_at(env, now).unwrap()));
        let bytes = batched(
            || fresh().to_json(),
            |json| {
                let env = Envelope::from_json(json.as_bytes(), &limits).unwrap();
                black_box(full.verify_at(env, now).unwrap())
            },
        );
        let sign = batched(
            || nonce(next()),
            |n| {
                black_box(
                    ring.sign_at(&action, now, Duration::from_secs(300), n)
                        .unwrap(),
                )
            },
        );
        rows.push([raw, pre, nore, fullv, bytes, sign]);
    }
    let median = |f: &dyn Fn(&[f64; 6]) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!("interleaved medians over {ROUNDS} rounds of {N} operations:");
    eprintln!("  raw HMAC keyed per call   {:7.0} ns", median(&|r| r[0]));
    eprintln!(
        "  raw HMAC pre-keyed        {:7.0} ns  ratio to raw {:.2}x",
        median(&|r| r[1]),
        median(&|r| r[1] / r[0])
    );
    eprintln!(
        "  verify without replay     {:7.0} ns  ratio to raw {:.2}x",
        median(&|r| r[2]),
        median(&|r| r[2] / r[0])
    );
    eprintln!(
        "  verify (full)             {:7.0} ns  ratio to raw {:.2}x, to pre-keyed {:.2}x, {:.0}k/s",
        median(&|r| r[3]),
        median(&|r| r[3] / r[0]),
        median(&|r| r[3] / r[1]),
        1e6 / median(&|r| r[3])
    );
    eprintln!(
        "  parse JSON + verify       {:7.0} ns  ratio to raw {:.2}x, {:.0}k/s",
        median(&|r| r[4]),
        median(&|r| r[4] / r[0]),
        1e6 / median(&|r| r[4])
    );
    eprintln!(
        "  sign                      {:7.0} ns  ratio to raw {:.2}x",
        median(&|r| r[5]),
        median(&|r| r[5] / r[0])
    );
}

criterion_group!(benches, interleaved_ratios, bench);
criterion_main!(benches);
