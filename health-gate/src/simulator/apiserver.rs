//! The simulated kube-apiserver: a real HTTPS server whose behaviour comes
//! from the flags it was started with.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

use crate::clock::{monotonic_nanos, parse_duration};

/// A failure mode of the simulated server, from `--sim-fault=...`
/// (comma-separated for several).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// `crash`: exit with status 1 at startup, before listening (like a bad
    /// flag value); under the kubelet simulator this is a crash loop.
    Crash,
    /// `die-after=<duration>`: serve healthy, then exit with status 1.
    DieAfter(Duration),
    /// `hang`: accept connections and never answer (not even the TLS
    /// handshake).
    Hang,
    /// `etcd-down`: answer, but the `etcd` check fails (HTTP 500 unless
    /// excluded with `?exclude=etcd`).
    EtcdDown,
    /// `forbid-anonymous`: anonymous requests get 403 (RBAC without the
    /// `system:public-info-viewer` binding).
    ForbidAnonymous,
    /// `require-client-cert`: the TLS handshake demands a client
    /// certificate.
    RequireClientCert,
}

/// The simulated server's settings, parsed from kube-apiserver-style flags.
///
/// Real flags understood: `--bind-address`, `--secure-port`,
/// `--tls-cert-file`, `--tls-private-key-file`, `--client-ca-file`,
/// `--anonymous-auth`, `--token-auth-file`, `--audit-policy-file` (its
/// target must exist, or the server exits with status 1 as the real one
/// does). Simulator flags: `--sim-fault=...` (see [`Fault`]),
/// `--sim-startup-delay=<duration>` (before listening),
/// `--sim-ready-after=<duration>` (listening but the
/// `poststarthook/rbac/bootstrap-roles` check fails until then),
/// `--sim-ready-file=<path>` (the `CLOCK_MONOTONIC` nanoseconds at which it
/// first answers healthy are written there). Other flags are accepted and
/// ignored, so a real manifest's command line works.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiserverFlags {
    /// `--bind-address` (default 127.0.0.1 in the simulator).
    pub bind_address: IpAddr,
    /// `--secure-port` (default 6443).
    pub secure_port: u16,
    /// `--tls-cert-file`.
    pub tls_cert_file: Option<PathBuf>,
    /// `--tls-private-key-file`.
    pub tls_private_key_file: Option<PathBuf>,
    /// `--client-ca-file`.
    pub client_ca_file: Option<PathBuf>,
    /// `--anonymous-auth` (default true).
    pub anonymous_auth: bool,
    /// `--token-auth-file`.
    pub token_auth_file: Option<PathBuf>,
    /// `--audit-policy-file`.
    pub audit_policy_file: Option<PathBuf>,
    /// `--sim-fault`.
    pub faults: Vec<Fault>,
    /// `--sim-startup-delay`.
    pub startup_delay: Duration,
    /// `--sim-ready-after`.
    pub ready_after: Duration,
    /// `--sim-ready-file`.
    pub ready_file: Option<PathBuf>,
}

impl Default for ApiserverFlags {
    fn default() -> Self {
        Self {
            bind_address: IpAddr::from([127, 0, 0, 1]),
            secure_port: 6443,
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
            anonymous_auth: true,
            token_auth_file: None,
            audit_policy_file: None,
            faults: Vec::new(),
            startup_delay: Duration::ZERO,
            ready_after: Duration::ZERO,
            ready_file: None,
        }
    }
}

/// Flags that take a value (so `--flag value` consumes the next argument).
const VALUE_FLAGS: &[&str] = &[
    "bind-address",
    "secure-port",
    "tls-cert-file",
    "tls-private-key-file",
    "client-ca-file",
    "token-auth-file",
    "audit-policy-file",
    "sim-fault",
    "sim-startup-delay",
    "sim-ready-after",
    "sim-ready-file",
];

impl ApiserverFlags {
    /// Parses a command line (without `argv[0]`).
    ///
    /// # Errors
    /// A message naming the flag with an invalid value.
    pub fn parse<I, S>(args: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.into().to_string_lossy().into_owned())
            .collect();
        let mut flags = Self::default();
        let mut i = 0;
        while let Some(arg) = args.get(i) {
            i += 1;
            let Some(body) = arg.strip_prefix("--") else {
                continue;
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None if VALUE_FLAGS.contains(&body) => {
                    let v = args.get(i).cloned();
                    i += 1;
                    (body, v)
                }
                None => (body, None),
            };
            flags.set(name, value)?;
        }
        Ok(flags)
    }

    fn set(&mut self, name: &str, value: Option<String>) -> Result<(), String> {
        let need = |v: Option<String>| v.ok_or_else(|| format!("flag needs an argument: --{name}"));
        let invalid = |v: &str, e: &dyn std::fmt::Display| {
            format!("invalid argument {v:?} for \"--{name}\" flag: {e}")
        };
        match name {
            "bind-address" => {
                let v = need(value)?;
                self.bind_address = v.parse().map_err(|e| invalid(&v, &e))?;
            }
            "secure-port" => {
                let v = need(value)?;
                self.secure_port = v.parse().map_err(|e| invalid(&v, &e))?;
            }
            "tls-cert-file" => self.tls_cert_file = Some(need(value)?.into()),
            "tls-private-key-file" => self.tls_private_key_file = Some(need(value)?.into()),
            "client-ca-file" => self.client_ca_file = Some(need(value)?.into()),
            "token-auth-file" => self.token_auth_file = Some(need(value)?.into()),
            "audit-policy-file" => self.audit_policy_file = Some(need(value)?.into()),
            "anonymous-auth" => {
                let v = value.unwrap_or_else(|| "true".to_owned());
                self.anonymous_auth = v.parse().map_err(|e| invalid(&v, &e))?;
            }
            "sim-fault" => {
                let v = need(value)?;
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let fault = match part.split_once('=') {
                        Some(("die-after", d)) => {
                            Fault::DieAfter(parse_duration(d).map_err(|e| invalid(&v, &e))?)
                        }
                        None if part == "crash" => Fault::Crash,
                        None if part == "hang" => Fault::Hang,
                        None if part == "etcd-down" => Fault::EtcdDown,
                        None if part == "forbid-anonymous" => Fault::ForbidAnonymous,
                        None if part == "require-client-cert" => Fault::RequireClientCert,
                        _ => return Err(invalid(&v, &format!("unknown fault {part:?}"))),
                    };
                    self.faults.push(fault);
                }
            }
            "sim-startup-delay" => {
                let v = need(value)?;
                self.startup_delay = parse_duration(&v).map_err(|e| invalid(&v, &e))?;
            }
            "sim-ready-after" => {
                let v = need(value)?;
                self.ready_after = parse_duration(&v).map_err(|e| invalid(&v, &e))?;
            }
            "sim-ready-file" => self.ready_file = Some(need(value)?.into()),
            _ => {}
        }
        Ok(())
    }

    fn has(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }
}

/// Logs like klog to stderr: this function stands in for a process's main,
/// and its stderr is the "container log" the kubelet simulator keeps.
macro_rules! klog {
    ($level:literal, $($arg:tt)*) => {{
        let _ = writeln!(
            std::io::stderr(),
            "{} kube-apiserver-sim[{}] {}",
            $level,
            std::process::id(),
            format_args!($($arg)*)
        );
    }};
}

/// Runs the simulated kube-apiserver in this process until it is killed or
/// a fault makes it exit. `args` excludes `argv[0]`.
///
/// Returns the process exit code for errors the real server also exits on
/// (bad flag values, a missing `--audit-policy-file` target, unusable
/// certificates, a port in use) and for `--sim-fault=crash`.
///
/// The process asks the kernel to SIGKILL it when the thread that started
/// it exits (`PR_SET_PDEATHSIG`), so a simulator never outlives its kubelet.
pub fn serve_apiserver<I, S>(args: I) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    // The signal was armed only now: if the kubelet simulator died between
    // starting this process and here, it never comes. Check the parent.
    if let Some(expected) = std::env::var(SIM_PARENT_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    {
        let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
        if parent != Some(expected) {
            klog!(
                "E",
                "Error: the kubelet simulator (pid {expected}) is gone; exiting (a simulated \
                 server never outlives it)"
            );
            return ExitCode::from(1);
        }
    }
    let flags = match ApiserverFlags::parse(args) {
        Ok(f) => f,
        Err(e) => {
            klog!("E", "Error: {e}");
            return ExitCode::from(1);
        }
    };
    klog!("I", "SIMULATION of kube-apiserver; flags: {flags:?}");
    if !flags.startup_delay.is_zero() {
        std::thread::sleep(flags.startup_delay);
    }
    if let Some(policy) = &flags.audit_policy_file
        && let Err(e) = std::fs::read(policy)
    {
        klog!(
            "E",
            "Error: loading audit policy file: failed to read file path \"{}\": {e}",
            policy.display()
        );
        return ExitCode::from(1);
    }
    if flags.has(Fault::Crash) {
        klog!("E", "Error: simulated startup failure (--sim-fault=crash)");
        return ExitCode::from(1);
    }
    let config = match tls_config(&flags) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            klog!("E", "Error: {e}");
            return ExitCode::from(1);
        }
    };
    let tokens = match load_tokens(flags.token_auth_file.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            klog!("E", "Error: {e}");
            return ExitCode::from(1);
        }
    };
    let addr = (flags.bind_address, flags.secure_port);
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            klog!(
                "E",
                "Error: failed to create listener: failed to listen on {}:{}: {e}",
                flags.bind_address,
                flags.secure_port
            );
            return ExitCode::from(1);
        }
    };
    let started = Instant::now();
    klog!(
        "I",
        "Serving securely on {}:{}",
        flags.bind_address,
        flags.secure_port
    );
    let state = Arc::new(State {
        flags: flags.clone(),
        tokens,
        ready_at: started + flags.ready_after,
    });
    if let Some(path) = flags.ready_file.clone() {
        let delay = flags.ready_after;
        let healthy = !flags.has(Fault::EtcdDown) && !flags.has(Fault::Hang);
        if healthy {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                write_ready_file(&path);
            });
        }
    }
    for fault in &flags.faults {
        if let Fault::DieAfter(d) = *fault {
            std::thread::spawn(move || {
                std::thread::sleep(d);
                klog!("E", "simulated crash after {d:?} (--sim-fault=die-after)");
                std::process::exit(2);
            });
        }
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let config = Arc::clone(&config);
        let state = Arc::clone(&state);
        std::thread::spawn(move || handle(stream, config, &state));
    }
    ExitCode::from(1)
}

/// The environment variable the kubelet simulator sets (to `1`) on every
/// server it starts. [`dispatch_by_argv0`] acts only when it is present, so a
/// binary that merely happens to be installed or linked as `kube-apiserver` on
/// a real node never turns into a fake API server answering health probes.
pub const SIMULATION_ENV: &str = "KUBESAFE_SIMULATION";

/// The environment variable through which the kubelet simulator tells each
/// server its own pid: the server exits at once when its parent is another
/// process (the simulator died before the server armed its parent-death
/// signal).
pub const SIM_PARENT_ENV: &str = "KUBESAFE_SIM_PARENT";

/// If this process was started under the name `kube-apiserver` by the kubelet
/// simulator (through the symlink it makes, with [`SIMULATION_ENV`] set), runs
/// the simulated server and returns its exit code; otherwise returns `None`.
/// Lets a binary such as `kubesafe` double as the simulator:
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     if let Some(code) = kubesafe_health_gate::simulator::dispatch_by_argv0() {
///         return code;
///     }
///     // ... the binary's own main ...
///     std::process::ExitCode::SUCCESS
/// }
/// ```
#[must_use]
pub fn dispatch_by_argv0() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    let name = Path::new(&argv0)
        .file_name()?
        .to_string_lossy()
        .into_owned();
    let simulated = std::env::var_os(SIMULATION_ENV).is_some_and(|v| v == "1");
    if name == "kube-apiserver" && !simulated {
        tracing::debug!(
            "started as kube-apiserver without {SIMULATION_ENV}=1: not acting as the simulator"
        );
    }
    (name == "kube-apiserver" && simulated).then(|| serve_apiserver(args))
}

fn write_ready_file(path: &Path) {
    let nanos = monotonic_nanos();
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    if std::fs::write(&tmp, format!("{nanos}\n")).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

struct State {
    flags: ApiserverFlags,
    tokens: HashMap<String, String>,
    ready_at: Instant,
}

fn tls_config(flags: &ApiserverFlags) -> Result<ServerConfig, String> {
    let cert_path = flags
        .tls_cert_file
        .as_ref()
        .ok_or("--tls-cert-file is required by the simulator")?;
    let key_path = flags
        .tls_private_key_file
        .as_ref()
        .ok_or("--tls-private-key-file is required by the simulator")?;
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("failed to load {}: {e}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("failed to load {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &flags.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(ca)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("failed to load {}: {e}", ca.display()))?;
            for c in cas {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if flags.has(Fault::RequireClientCert) {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn load_tokens(path: Option<&Path>) -> Result<HashMap<String, String>, String> {
    let Some(path) = path else {
        return Ok(HashMap::new());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("failed to read token file {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(',');
            let token = parts.next()?.trim();
            let user = parts.next()?.trim();
            (!token.is_empty()).then(|| (token.to_owned(), user.to_owned()))
        })
        .collect())
}

fn handle(tcp: TcpStream, config: Arc<ServerConfig>, state: &State) {
    if state.flags.has(Fault::Hang) {
        // Hold the connection open and never answer.
        let _keep = tcp;
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, tcp);
    let Some(head) = read_head(&mut tls) else {
        return;
    };
    let response = respond(
        &head,
        tls.conn.peer_certificates().is_some_and(|c| !c.is_empty()),
        state,
    );
    let _ = tls.write_all(response.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
}

fn read_head(stream: &mut impl Read) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Builds the whole HTTP response for a request head.
fn respond(head: &str, has_client_cert: bool, state: &State) -> String {
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or("/");
    let auth = lines.take_while(|l| !l.is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| v.trim().to_owned())
    });
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    // Authentication, in kube-apiserver's order: client certificate, bearer
    // token, then anonymous.
    let authenticated = if has_client_cert {
        true
    } else if let Some(token) = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
        if !state.tokens.contains_key(token.trim()) {
            return status_response(401, "Unauthorized", "Unauthorized");
        }
        true
    } else {
        false
    };
    if !authenticated {
        if !state.flags.anonymous_auth {
            return status_response(401, "Unauthorized", "Unauthorized");
        }
        if state.flags.has(Fault::ForbidAnonymous) {
            return status_response(
                403,
                "Forbidden",
                &format!(
                    "forbidden: User \\\"system:anonymous\\\" cannot get path \\\"{}\\\"",
                    json_escape(path)
                ),
            );
        }
    }
    if method != "GET" && method != "HEAD" {
        return status_response(405, "MethodNotAllowed", "method not allowed");
    }
    let (endpoint, single) = match path.trim_end_matches('/') {
        "/healthz" => ("healthz", None),
        "/livez" => ("livez", None),
        "/readyz" => ("readyz", None),
        p => match ["/healthz/", "/livez/", "/readyz/"].iter().find_map(|pre| {
            p.strip_prefix(pre)
                .map(|rest| (pre.trim_matches('/'), rest))
        }) {
            Some((e, rest)) => (e, Some(rest)),
            None => return plain(404, "404 page not found\n"),
        },
    };
    let mut verbose = false;
    let mut exclude: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "verbose" => verbose = true,
            "exclude" => exclude.push(percent_decode(v)),
            _ => {}
        }
    }
    let checks = checks_for(endpoint, state);
    if let Some(name) = single {
        return match checks.iter().find(|(n, _)| *n == name) {
            Some((_, true)) => plain(200, "ok"),
            Some((n, false)) => plain(500, &format!("internal server error: {n} failed\n")),
            None => plain(404, "404 page not found\n"),
        };
    }
    let mut out = String::new();
    let mut failed = false;
    let mut unmatched: Vec<&str> = exclude.iter().map(String::as_str).collect();
    for (name, ok) in &checks {
        if exclude.iter().any(|e| e == name) {
            unmatched.retain(|e| e != name);
            out.push_str(&format!("[+]{name} excluded: ok\n"));
        } else if *ok {
            out.push_str(&format!("[+]{name} ok\n"));
        } else {
            failed = true;
            out.push_str(&format!("[-]{name} failed: reason withheld\n"));
        }
    }
    if !unmatched.is_empty() {
        let quoted: Vec<String> = unmatched.iter().map(|u| format!("{u:?}")).collect();
        out.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            quoted.join(",")
        ));
    }
    if failed {
        plain(500, &format!("{out}{endpoint} check failed\n"))
    } else if verbose {
        plain(200, &format!("{out}{endpoint} check passed\n"))
    } else {
        plain(200, "ok")
    }
}

fn checks_for(endpoint: &str, state: &State) -> Vec<(&'static str, bool)> {
    let etcd = !state.flags.has(Fault::EtcdDown);
    let ready = Instant::now() >= state.ready_at;
    let mut checks = vec![
        ("ping", true),
        ("log", true),
        ("etcd", etcd),
        ("poststarthook/start-apiserver-admission-initializer", true),
        ("poststarthook/generic-apiserver-start-informers", true),
        ("poststarthook/start-apiextensions-informers", true),
        ("poststarthook/crd-informer-synced", true),
        ("poststarthook/rbac/bootstrap-roles", ready),
        ("poststarthook/bootstrap-controller", true),
    ];
    if endpoint == "readyz" {
        checks.insert(3, ("etcd-readiness", etcd));
        checks.push(("informer-sync", true));
        checks.push(("shutdown", true));
    }
    checks
}

fn plain(code: u16, body: &str) -> String {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         X-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn status_response(code: u16, reason: &str, message: &str) -> String {
    let body = format!(
        "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"status\":\"Failure\",\
         \"message\":\"{message}\",\"reason\":\"{reason}\",\"details\":{{}},\"code\":{code}}}\n"
    );
    let text = match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {code} {text}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn json_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(args: &[&str]) -> State {
        State {
            flags: ApiserverFlags::parse(args.iter().copied()).unwrap(),
            tokens: HashMap::from([("t0k".to_owned(), "probe".to_owned())]),
            ready_at: Instant::now(),
        }
    }

    fn get(target: &str, auth: Option<&str>) -> String {
        let mut h = format!("GET {target} HTTP/1.1\r\nHost: x\r\n");
        if let Some(a) = auth {
            h.push_str(&format!("Authorization: {a}\r\n"));
        }
        h.push_str("\r\n");
        h
    }

    #[test]
    fn parses_flags_in_both_forms() {
        let f = ApiserverFlags::parse([
            "--secure-port",
            "7443",
            "--anonymous-auth=false",
            "--sim-fault=die-after=1.5s,etcd-down",
            "--unknown-flag=x",
            "--profiling",
        ])
        .unwrap();
        assert_eq!(f.secure_port, 7443);
        assert!(!f.anonymous_auth);
        assert_eq!(
            f.faults,
            vec![
                Fault::DieAfter(Duration::from_millis(1500)),
                Fault::EtcdDown
            ]
        );
        assert!(ApiserverFlags::parse(["--secure-port=http"]).is_err());
        assert!(ApiserverFlags::parse(["--sim-fault=explode"]).is_err());
    }

    #[test]
    fn verbose_output_matches_the_apiserver_format() {
        let s = state(&["--sim-fault=etcd-down"]);
        let r = respond(&get("/livez?verbose&exclude=nope", None), false, &s);
        assert!(r.starts_with("HTTP/1.1 500"), "{r}");
        assert!(r.contains("[-]etcd failed: reason withheld\n"), "{r}");
        assert!(
            r.contains("warn: some health checks cannot be excluded: no matches for \"nope\"\n")
        );
        assert!(r.ends_with("livez check failed\n"), "{r}");

        let r = respond(
            &get("/readyz?verbose&exclude=etcd&exclude=etcd-readiness", None),
            false,
            &s,
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("[+]etcd excluded: ok\n"), "{r}");
        assert!(r.ends_with("readyz check passed\n"), "{r}");

        let ok = state(&[]);
        let r = respond(&get("/healthz", None), false, &ok);
        assert!(r.ends_with("\r\n\r\nok"), "{r}");
        let r = respond(&get("/livez/etcd", None), false, &ok);
        assert!(r.ends_with("\r\n\r\nok"), "{r}");
    }

    #[test]
    fn authentication_rules() {
        let s = state(&["--anonymous-auth=false"]);
        assert!(respond(&get("/livez", None), false, &s).starts_with("HTTP/1.1 401"));
        assert!(respond(&get("/livez", None), true, &s).starts_with("HTTP/1.1 200"));
        assert!(respond(&get("/livez", Some("Bearer t0k")), false, &s).starts_with("HTTP/1.1 200"));
        assert!(respond(&get("/livez", Some("Bearer bad")), false, &s).starts_with("HTTP/1.1 401"));
        let s = state(&["--sim-fault=forbid-anonymous"]);
        let r = respond(&get("/livez", None), false, &s);
        assert!(r.starts_with("HTTP/1.1 403"), "{r}");
        assert!(r.contains("system:anonymous"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("poststarthook%2Frbac%2Fbootstrap-roles"),
            "poststarthook/rbac/bootstrap-roles"
        );
        assert_eq!(percent_decode("a%zz"), "a%zz");
    }
}
