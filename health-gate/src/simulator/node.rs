//! A simulated node: PKI, manifest, kubelet simulator, on a free loopback
//! address.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{KubeletConfig, KubeletSim, Pki, SimError, StopSignal, random_u64};
use crate::probe::{HealthProbe, HttpProbe, HttpProbeBuilder};

/// Builder of a [`SimNode`]; see [`SimNode::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SimNodeBuilder {
    dir: PathBuf,
    server_executable: PathBuf,
    address: Option<IpAddr>,
    port: Option<u16>,
    args: Vec<String>,
    ready_file: bool,
    sync_delay: Duration,
    restart_delay: Duration,
    crash_backoff: (Duration, Duration),
    stop_signal: StopSignal,
}

/// A simulated control-plane node in a directory: a [`Pki`] in `pki/`, the
/// manifest `manifests/kube-apiserver.yaml`, and a [`KubeletSim`] running
/// the simulated kube-apiserver from it (work files in `kubelet/`).
///
/// By default it listens on a random address in `127.0.0.0/8` (not
/// `127.0.0.1`) on a port the kernel reported free, so tests running in
/// parallel do not collide: the address is unique to the node, and the port
/// is free for it even while the server restarts. Set
/// [`SimNodeBuilder::address`] / [`SimNodeBuilder::port`] for a fixed
/// endpoint (a demo on `127.0.0.1:6443`).
#[derive(Debug)]
pub struct SimNode {
    dir: PathBuf,
    pki: Pki,
    manifest: PathBuf,
    address: IpAddr,
    port: u16,
    args: Vec<String>,
    ready_file: Option<PathBuf>,
    kubelet: KubeletSim,
}

impl SimNode {
    /// Starts building a node in `dir` whose server is `server_executable`.
    pub fn builder(
        dir: impl Into<PathBuf>,
        server_executable: impl Into<PathBuf>,
    ) -> SimNodeBuilder {
        SimNodeBuilder {
            dir: dir.into(),
            server_executable: server_executable.into(),
            address: None,
            port: None,
            args: Vec::new(),
            ready_file: false,
            sync_delay: Duration::ZERO,
            restart_delay: Duration::from_millis(100),
            crash_backoff: (Duration::from_millis(100), Duration::from_secs(1)),
            stop_signal: StopSignal::Kill,
        }
    }

    /// The node's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificates.
    #[must_use]
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The static-pod manifest the kubelet simulator watches.
    #[must_use]
    pub fn manifest_path(&self) -> &Path {
        &self.manifest
    }

    /// The listening address.
    #[must_use]
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The listening port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://ADDRESS:PORT{path}`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.address, self.port)
    }

    /// The kubelet simulator.
    #[must_use]
    pub fn kubelet(&self) -> &KubeletSim {
        &self.kubelet
    }

    /// Where the server writes the instant it first answers healthy, if
    /// enabled with [`SimNodeBuilder::ready_file`].
    #[must_use]
    pub fn ready_file(&self) -> Option<&Path> {
        self.ready_file.as_deref()
    }

    /// The server's command line in the initial manifest (without
    /// `kube-apiserver` itself).
    #[must_use]
    pub fn base_args(&self) -> &[String] {
        &self.args
    }

    /// The manifest text with these extra flags appended to the base
    /// command line (a later flag wins over an earlier one, as in the real
    /// server).
    #[must_use]
    pub fn manifest_with(&self, extra_args: &[&str]) -> String {
        let mut args = self.args.clone();
        args.extend(extra_args.iter().map(|s| (*s).to_owned()));
        manifest_yaml(&args)
    }

    /// A probe builder for `path` trusting the node's CA and presenting its
    /// client certificate.
    pub fn probe(&self, path: &str) -> HttpProbeBuilder {
        HttpProbe::builder(self.url(path))
            .ca_file(&self.pki.ca_cert)
            .client_cert_files(&self.pki.client_cert, &self.pki.client_key)
    }

    /// Waits until `/readyz` answers healthy to the node's client
    /// certificate.
    ///
    /// # Errors
    /// [`SimError::Timeout`] with the last probe outcome and the logs.
    pub fn wait_until_healthy(&self, timeout: Duration) -> Result<(), SimError> {
        let mut probe = self
            .probe("/readyz")
            .timeout(Duration::from_secs(1))
            .build()?;
        let deadline = Instant::now() + timeout;
        loop {
            let o = probe.check(Duration::from_secs(1));
            if o.is_healthy() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SimError::Timeout(format!(
                    "simulated apiserver at {} not healthy within {timeout:?}: {o}\n{}",
                    self.url("/readyz"),
                    self.kubelet.logs()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the kubelet simulator and its server.
    pub fn stop(self) {
        self.kubelet.stop();
    }
}

impl SimNodeBuilder {
    /// Listens on this address (default: random in 127.0.0.0/8).
    pub fn address(mut self, address: IpAddr) -> Self {
        self.address = Some(address);
        self
    }

    /// Listens on this port (default: one the kernel reports free).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Extra flags for the initial manifest (e.g. `--anonymous-auth=false`,
    /// `--sim-ready-after=200ms`).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds `--sim-ready-file=<dir>/ready` to the command line.
    pub fn ready_file(mut self, on: bool) -> Self {
        self.ready_file = on;
        self
    }

    /// See [`KubeletConfig::sync_delay`].
    pub fn sync_delay(mut self, d: Duration) -> Self {
        self.sync_delay = d;
        self
    }

    /// See [`KubeletConfig::restart_delay`].
    pub fn restart_delay(mut self, d: Duration) -> Self {
        self.restart_delay = d;
        self
    }

    /// See [`KubeletConfig::crash_backoff`].
    pub fn crash_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.crash_backoff = (initial, max);
        self
    }

    /// See [`KubeletConfig::stop_signal`].
    pub fn stop_signal(mut self, s: StopSignal) -> Self {
        self.stop_signal = s;
        self
    }

    /// Generates the PKI, writes the manifest and starts the kubelet
    /// simulator (which starts the server at once).
    ///
    /// # Errors
    /// [`SimError`] when a file cannot be written, no port is free or the
    /// kubelet simulator cannot start.
    pub fn start(self) -> Result<SimNode, SimError> {
        let dir = self.dir;
        let address = self.address.unwrap_or_else(random_loopback);
        let port = match self.port {
            Some(p) => p,
            None => free_port(address)?,
        };
        let pki = Pki::generate(&dir.join("pki"), &[address])?;
        let manifests = dir.join("manifests");
        std::fs::create_dir_all(&manifests).map_err(|source| SimError::Io {
            path: manifests.clone(),
            source,
        })?;
        let ready_file = self.ready_file.then(|| dir.join("ready"));
        let mut args = vec![
            format!("--advertise-address={address}"),
            format!("--bind-address={address}"),
            format!("--secure-port={port}"),
            "--authorization-mode=Node,RBAC".to_owned(),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            format!("--tls-cert-file={}", pki.server_cert.display()),
            format!("--tls-private-key-file={}", pki.server_key.display()),
            format!("--token-auth-file={}", pki.token_auth_file.display()),
            "--etcd-servers=https://127.0.0.1:2379".to_owned(),
        ];
        if let Some(r) = &ready_file {
            args.push(format!("--sim-ready-file={}", r.display()));
        }
        args.extend(self.args);
        let manifest = manifests.join("kube-apiserver.yaml");
        std::fs::write(&manifest, manifest_yaml(&args)).map_err(|source| SimError::Io {
            path: manifest.clone(),
            source,
        })?;
        let cfg = KubeletConfig::new(&manifest, &self.server_executable, dir.join("kubelet"))
            .sync_delay(self.sync_delay)
            .restart_delay(self.restart_delay)
            .crash_backoff(self.crash_backoff.0, self.crash_backoff.1)
            .stop_signal(self.stop_signal);
        let kubelet = KubeletSim::start(cfg)?;
        Ok(SimNode {
            dir,
            pki,
            manifest,
            address,
            port,
            args,
            ready_file,
            kubelet,
        })
    }
}

/// A kubeadm-style kube-apiserver manifest running `kube-apiserver` with
/// `args`.
#[must_use]
pub fn manifest_yaml(args: &[String]) -> String {
    let mut out = String::from(
        "# SIMULATION: a kube-apiserver static pod written by the kubesafe node simulator.\n\
         apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    component: kube-apiserver\n    \
         tier: control-plane\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  \
         containers:\n  - command:\n    - kube-apiserver\n",
    );
    for a in args {
        out.push_str("    - ");
        out.push_str(&yaml_scalar(a));
        out.push('\n');
    }
    out.push_str(
        "    image: registry.k8s.io/kube-apiserver:v1.32.2\n    name: kube-apiserver\n  \
         hostNetwork: true\n  priorityClassName: system-node-critical\n",
    );
    out
}

fn yaml_scalar(s: &str) -> String {
    // Plain only for the shapes manifests use (`--flag=value`, words,
    // paths); everything else is a JSON string, which is valid YAML.
    let start_ok = s.starts_with("--")
        || s.starts_with('/')
        || s.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let typed = matches!(
        s,
        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
    );
    let plain = start_ok
        && !typed
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && s.trim() == s
        && !s.chars().any(|c| c.is_control() || c == '"' || c == '\\');
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

/// A random address in 127.0.0.0/8 that is not 127.0.0.x or 127.0.1.x.
fn random_loopback() -> IpAddr {
    let r = random_u64().to_le_bytes();
    let [a, b, c, ..] = r;
    IpAddr::V4(Ipv4Addr::new(127, 10 + a % 240, 1 + b % 254, 1 + c % 254))
}

fn free_port(address: IpAddr) -> Result<u16, SimError> {
    let l = TcpListener::bind((address, 0)).map_err(|source| SimError::Io {
        path: PathBuf::from(format!("{address}:0")),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| SimError::Io {
            path: PathBuf::from(format!("{address}:0")),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::file_replace::{container_argv, decode};

    #[test]
    fn manifest_decodes_to_the_argv() {
        let args: Vec<String> = [
            "--secure-port=6443",
            "--sim-fault=die-after=1s",
            "--weird=a: b",
            "--hash=x #y",
            "--path=/tmp/a b",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let pod = decode(manifest_yaml(&args).as_bytes()).unwrap();
        let argv = container_argv(&pod, None).unwrap();
        assert_eq!(argv[0], "kube-apiserver");
        assert_eq!(&argv[1..], &args[..]);
    }

    #[test]
    fn random_loopback_addresses_are_loopback() {
        for _ in 0..20 {
            let a = random_loopback();
            assert!(a.is_loopback());
            assert_ne!(a, IpAddr::from([127, 0, 0, 1]));
        }
    }
}
