//! Restart-aware health gating with verified rollback, for changing a
//! Kubernetes control-plane component (a static pod such as kube-apiserver)
//! without breaking it. Part of [kubesafe](https://github.com/kubesafe/kubesafe).
//!
//! The usual remediation script writes the manifest, polls `/healthz` every
//! 2 s and rolls back on timeout. It passes on the *old* process (still
//! answering `ok` until the kubelet restarts the pod), trusts a single `ok`
//! from a process that crash-loops seconds later, and rolls back a correct
//! `--anonymous-auth=false` because its anonymous probe now gets 401. This
//! crate's [`Transaction`] does not:
//!
//! * a [`RestartWitness`](witness::RestartWitness) must first see the
//!   component restarted with the intended flags
//!   ([`ProcessWitness`](witness::ProcessWitness): a new process under
//!   `/proc`, started after the write, whose command line carries them;
//!   or [`HealthTransitionWitness`](witness::HealthTransitionWitness));
//!   a change that cannot restart the pod (comment-only) skips this with a
//!   recorded reason;
//! * health must then hold for a settle window; a crash loop fails early;
//! * probes ([`HttpProbe`](probe::HttpProbe), [`CommandProbe`](probe::CommandProbe),
//!   [`FnProbe`](probe::FnProbe)) tell "credentials rejected" (401/403) apart
//!   from "unhealthy", and honour per-request timeouts (a hanging server
//!   cannot stall the gate past its deadline);
//! * polling starts at ~20 ms and backs off with jitter to 100 ms, so a
//!   healthy component is seen within ~100 ms, not 2 s;
//! * the rollback keeps the rejected file hidden for inspection and is
//!   itself gated: [`Outcome::RolledBack`] means the old configuration is
//!   back *and* healthy; otherwise [`Outcome::RollbackFailed`] names the
//!   backup to restore by hand.
//!
//! Every step is an [`Event`] (through `tracing` and a callback); outcomes
//! and events are serde-serializable and carry timings.
//!
//! The [`Change`] trait is how edits plug in:
//! [`FileReplace`] (atomic byte-level replacement with backup) ships here;
//! `ManifestChange` (feature `manifest-edit`) gates a lossless
//! `kubesafe-manifest-edit` edit of a static-pod manifest, holding the
//! manifest's lock for the whole transaction.
//!
//! # Example
//!
//! A closure probe and a file replacement on a temporary file; the
//! component is "healthy" once the file says so.
//!
//! ```
//! use std::time::Duration;
//! use kubesafe_health_gate::{FileReplace, GatePolicy, Outcome, Transaction};
//! use kubesafe_health_gate::probe::FnProbe;
//!
//! let dir = tempfile::tempdir()?;
//! let config = dir.path().join("component.yaml");
//! std::fs::write(&config, "mode: safe\n")?;
//!
//! // A change the probe rejects: it is rolled back.
//! let probe_path = config.clone();
//! let probe = FnProbe::from_result("mode is safe", move || {
//!     let text = std::fs::read_to_string(&probe_path).map_err(|e| e.to_string())?;
//!     if text.contains("safe") { Ok(()) } else { Err(format!("config says {text:?}")) }
//! });
//! let outcome = Transaction::new(
//!     // No kubelet watches this file: say no restart is expected.
//!     FileReplace::new(&config, "mode: reckless\n").restart_expected(false),
//!     probe,
//! )
//! .policy(
//!     GatePolicy::default()
//!         .deadline(Duration::from_millis(300))
//!         .settle(Duration::ZERO, 2),
//! )
//! .on_event(|event| eprintln!("{:?} {}", event.phase, event.kind))
//! .run();
//!
//! assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome}");
//! assert_eq!(std::fs::read_to_string(&config)?, "mode: safe\n");
//! println!("{}", serde_json::to_string_pretty(&outcome).unwrap());
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Against a real node, the probe is an [`HttpProbe`](probe::HttpProbe) of
//! `https://ADVERTISE-ADDRESS:6443/readyz` (kubeadm's serving certificate
//! names the advertise address, not `127.0.0.1`) with the cluster CA and a
//! client certificate, and the witness a
//! [`ProcessWitness`](witness::ProcessWitness) for `kube-apiserver`.
//!
//! # Features
//!
//! * `simulator` (off by default): the `simulator` module, a *simulated*
//!   node for tests, benchmarks and demos — a kube-apiserver stand-in over
//!   real HTTPS and a kubelet-like manifest watcher.
//! * `manifest-edit` (off by default): `ManifestChange`, a
//!   `kubesafe_manifest_edit::Edit` of a manifest as a [`Change`] (the
//!   change behind `kubesafe remediate`).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod change;
pub mod clock;
mod error;
mod exec;
pub mod outcome;
pub mod policy;
pub mod probe;
#[cfg(feature = "simulator")]
#[cfg_attr(docsrs, doc(cfg(feature = "simulator")))]
pub mod simulator;
mod transaction;
pub mod verify;
pub mod witness;

#[cfg(feature = "manifest-edit")]
pub use change::ManifestChange;
pub use change::{Change, ChangePlan, FileReplace, RestartExpectation};
pub use error::{ChangeError, PolicyError, ProbeError, WitnessError};
pub use outcome::{Event, EventKind, FailureReason, Outcome, OutcomeKind, Phase, Timings};
pub use policy::{Backoff, BackoffPolicy, GatePolicy};
pub use transaction::Transaction;
