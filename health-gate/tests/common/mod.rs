//! Shared helpers of the integration tests: a simulated node per test, on
//! its own loopback address, with short delays.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubesafe_health_gate::outcome::Event;
use kubesafe_health_gate::probe::HttpProbe;
use kubesafe_health_gate::simulator::{SimNode, SimNodeBuilder};
use kubesafe_health_gate::witness::ProcessWitness;
use kubesafe_health_gate::{BackoffPolicy, GatePolicy};

pub const SERVER: &str = env!("CARGO_BIN_EXE_kubesafe-sim-apiserver");

/// A node directory that outlives the node (dropped after it).
pub struct Bed {
    pub node: SimNode,
    pub dir: tempfile::TempDir,
}

impl Bed {
    /// Starts a node and waits until it is healthy.
    pub fn start(configure: impl FnOnce(SimNodeBuilder) -> SimNodeBuilder) -> Bed {
        let bed = Self::start_unready(configure);
        bed.node
            .wait_until_healthy(Duration::from_secs(20))
            .unwrap();
        bed
    }

    /// Starts a node without waiting (for servers that never get healthy).
    pub fn start_unready(configure: impl FnOnce(SimNodeBuilder) -> SimNodeBuilder) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let builder = SimNode::builder(dir.path(), SERVER)
            .restart_delay(Duration::from_millis(100))
            .crash_backoff(Duration::from_millis(100), Duration::from_millis(400));
        let node = configure(builder).start().unwrap();
        Bed { node, dir }
    }

    /// The readyz probe with the cluster CA and the client certificate.
    pub fn probe(&self) -> HttpProbe {
        self.node
            .probe("/readyz")
            .verbose(true)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    }

    /// The process witness for this node's server (selected by its unique
    /// bind address).
    pub fn witness(&self) -> ProcessWitness {
        ProcessWitness::new("kube-apiserver")
            .select_flag("--bind-address", self.node.address().to_string())
            .select_flag("--secure-port", self.node.port().to_string())
    }

    pub fn manifest(&self) -> String {
        std::fs::read_to_string(self.node.manifest_path()).unwrap()
    }

    pub fn logs(&self) -> String {
        self.node.kubelet().logs()
    }

    /// The command line of the server the simulated kubelet is running now.
    pub fn running_argv(&self) -> Vec<String> {
        let pid = self
            .node
            .kubelet()
            .status()
            .pid
            .expect("a server is running");
        let root = kubesafe_health_gate::witness::procfs::default_root();
        kubesafe_health_gate::witness::procfs::read_process(&root, pid)
            .unwrap()
            .argv
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- simulator logs ----\n{}", self.logs());
        }
    }
}

/// Short timings for tests.
pub fn policy() -> GatePolicy {
    GatePolicy::default()
        .deadline(Duration::from_secs(8))
        .settle(Duration::from_millis(300), 2)
        .preflight(Some(Duration::from_secs(5)))
        .probe_timeout(Duration::from_secs(1))
        .backoff(
            BackoffPolicy::new(
                Duration::from_millis(20),
                1.5,
                Duration::from_millis(100),
                0.2,
            )
            .unwrap(),
        )
}

/// Collects events for assertions.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<Event>>>);

impl Events {
    pub fn sink(&self) -> impl FnMut(&Event) + 'static {
        let inner = Arc::clone(&self.0);
        move |e: &Event| inner.lock().unwrap().push(e.clone())
    }

    pub fn names(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                let v = serde_json::to_value(e).unwrap();
                format!(
                    "{}:{}",
                    v["phase"].as_str().unwrap(),
                    v["event"].as_str().unwrap()
                )
            })
            .collect()
    }

    pub fn dump(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| format!("{:>8.1?} {:?} {}", e.at, e.phase, e.kind))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
