//! A SIMULATED control-plane node, for tests, benchmarks and demos (feature
//! `simulator`). Nothing here talks to a real cluster.
//!
//! * [`serve_apiserver`]: a stand-in kube-apiserver over real HTTPS (rustls
//!   on ring, certificates from [`Pki`]), serving `/livez`, `/readyz`,
//!   `/healthz` with the real verbose format and `?exclude=`, optional
//!   client-certificate and bearer-token authentication, 401 for anonymous
//!   requests under `--anonymous-auth=false`. Its behaviour comes from its
//!   flags (see [`ApiserverFlags`]), so a manifest edit changes it: crash at
//!   startup, die after a while, hang without answering, fail the etcd check,
//!   exit when `--audit-policy-file` is missing like the real server.
//! * [`KubeletSim`]: watches one manifest, hashes the *decoded* pod (so a
//!   comment-only edit restarts nothing), kills and restarts the server as a
//!   separate process on a change, and restarts a crashed one with
//!   CrashLoopBackOff-style delays.
//! * [`SimNode`]: both together in a directory, on a free loopback address.
//!
//! The server must run as its own process (the process witness reads its
//! `/proc` entry; the kubelet kills it). Two ways to provide the executable:
//! this crate's `kubesafe-sim-apiserver` binary (built with the feature), or
//! any binary that calls [`dispatch_by_argv0`] first thing in `main` and is
//! passed as the executable: the kubelet simulator starts it through a
//! symlink named `kube-apiserver`.

mod apiserver;
mod kubelet;
mod node;
mod pki;

use std::path::PathBuf;

pub use apiserver::{
    ApiserverFlags, Fault, SIM_PARENT_ENV, SIMULATION_ENV, dispatch_by_argv0, serve_apiserver,
};
pub use kubelet::{KubeletConfig, KubeletSim, KubeletStatus, StopSignal};
pub use node::{SimNode, SimNodeBuilder, manifest_yaml};
pub use pki::Pki;

/// A failure of the simulator itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A file or directory could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate could not be generated.
    #[error("certificate generation: {0}")]
    Certificate(String),
    /// Bad settings.
    #[error("simulator configuration: {0}")]
    Config(String),
    /// The probe could not be built.
    #[error(transparent)]
    Probe(#[from] crate::error::ProbeError),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// A random number (no RNG dependency: the standard library's randomly
/// keyed hasher, fed the time).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}
