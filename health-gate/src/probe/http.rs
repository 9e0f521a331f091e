//! HTTP(S) health probe on `reqwest` (blocking) with a rustls configuration
//! built on the ring crypto provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::verbose;
use super::{HealthProbe, ProbeOutcome, ProbeStatus};
use crate::error::ProbeError;

/// Largest response body read from a health endpoint; the rest is ignored.
const MAX_BODY: usize = 64 * 1024;

/// Probes an HTTP(S) health endpoint such as `https://10.0.0.10:6443/readyz`.
///
/// * HTTP 200 is [`ProbeStatus::Healthy`].
/// * HTTP 401 and 403 are [`ProbeStatus::Unauthorized`]: the server is up and
///   rejected the probe's credentials (after `--anonymous-auth=false`, an
///   anonymous probe gets 401). Never reported as unhealthy.
/// * Any other status is [`ProbeStatus::Unhealthy`], with the named checks of
///   the verbose output parsed into [`ProbeOutcome::checks`].
/// * A request that does not complete within the timeout the gate passes (or
///   the probe's own, whichever is smaller) is [`ProbeStatus::TimedOut`] — a
///   server that accepts the connection and never answers cannot stall the
///   gate. Connection and TLS failures are [`ProbeStatus::Unreachable`].
///
/// Each check opens a new connection (no pooling): a pooled connection to a
/// process the kubelet just killed would report a stale error, and a real
/// restart must show as the listener going away.
///
/// ```no_run
/// use kubesafe_health_gate::probe::{HealthProbe, HttpProbe};
/// use std::time::Duration;
///
/// // The address the serving certificate names: on kubeadm, the node's
/// // advertise address (here 10.0.0.10), not 127.0.0.1.
/// let mut probe = HttpProbe::builder("https://10.0.0.10:6443/readyz")
///     .ca_file("/etc/kubernetes/pki/ca.crt")
///     .client_cert_files(
///         "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
///         "/etc/kubernetes/pki/apiserver-kubelet-client.key",
///     )
///     .verbose(true)
///     .exclude("etcd")
///     .build()?;
/// let outcome = probe.check(Duration::from_secs(2));
/// println!("{outcome}");
/// # Ok::<(), kubesafe_health_gate::ProbeError>(())
/// ```
#[derive(Debug)]
pub struct HttpProbe {
    client: Client,
    url: reqwest::Url,
    token: Option<Token>,
    timeout: Duration,
}

#[derive(Clone)]
enum Token {
    Literal(String),
    File(PathBuf),
}

/// Never shows a literal token (probes and builders get logged with `{:?}`).
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Literal(_) => f.write_str("Literal(<redacted>)"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// Builder of an [`HttpProbe`]; see [`HttpProbe::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpProbeBuilder {
    url: String,
    ca_files: Vec<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    token: Option<Token>,
    insecure: bool,
    verbose: bool,
    exclude: Vec<String>,
    connect_timeout: Duration,
    timeout: Duration,
}

impl HttpProbe {
    /// Starts building a probe of `url` (`https://` or `http://`).
    pub fn builder(url: impl Into<String>) -> HttpProbeBuilder {
        HttpProbeBuilder {
            url: url.into(),
            ca_files: Vec::new(),
            client_cert: None,
            token: None,
            insecure: false,
            verbose: false,
            exclude: Vec::new(),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
        }
    }

    /// The URL requested, with `verbose` and `exclude` query parameters.
    #[must_use]
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    fn bearer(&self) -> Result<Option<String>, String> {
        match &self.token {
            None => Ok(None),
            Some(Token::Literal(t)) => Ok(Some(t.clone())),
            Some(Token::File(path)) => read_token(path).map(Some).map_err(|e| e.to_string()),
        }
    }
}

impl HttpProbeBuilder {
    /// Trusts the CA certificates in this PEM file (the cluster CA,
    /// `/etc/kubernetes/pki/ca.crt`) instead of the system trust store. May
    /// be called more than once.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Authenticates with this client certificate chain and private key (PEM
    /// files).
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Sends `Authorization: Bearer <token>` with the token read from this
    /// file at every check (service-account tokens are rotated).
    pub fn bearer_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token = Some(Token::File(path.into()));
        self
    }

    /// Sends `Authorization: Bearer <token>` with this token.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token::Literal(token.into()));
        self
    }

    /// Skips verification of the server's certificate (signatures of the
    /// handshake are still checked). An explicit opt-in for test clusters,
    /// logged as a warning when the probe is built; conflicts with
    /// [`ca_file`](Self::ca_file).
    pub fn insecure_skip_tls_verify(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Asks for verbose output (`?verbose`), so a healthy answer also lists
    /// the checks. Failing answers list them anyway.
    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = on;
        self
    }

    /// Excludes a named check (`?exclude=etcd`); may be called more than once.
    pub fn exclude(mut self, check: impl Into<String>) -> Self {
        self.exclude.push(check.into());
        self
    }

    /// Timeout of the TCP connect (default 2 s; never more than the timeout
    /// of the whole request).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Timeout of a whole request: connect, TLS handshake, sending, reading
    /// the answer (default 5 s). The gate may pass a smaller one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Loads the certificates and builds the probe.
    ///
    /// # Errors
    /// [`ProbeError`] naming the file or URL at fault: an unreadable or empty
    /// PEM file, a bad key, a URL that is not `http(s)`, `insecure` together
    /// with a CA bundle, or a TLS configuration rustls rejects.
    pub fn build(self) -> Result<HttpProbe, ProbeError> {
        let mut url = reqwest::Url::parse(&self.url).map_err(|e| ProbeError::InvalidUrl {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ProbeError::InvalidUrl {
                url: self.url.clone(),
                reason: format!("scheme {:?} is not http or https", url.scheme()),
            });
        }
        if self.insecure && !self.ca_files.is_empty() {
            return Err(ProbeError::Conflict(
                "insecure_skip_tls_verify and a CA bundle are mutually exclusive".to_owned(),
            ));
        }
        if self.verbose || !self.exclude.is_empty() {
            let mut pairs = url.query_pairs_mut();
            if self.verbose {
                pairs.append_key_only("verbose");
            }
            for name in &self.exclude {
                pairs.append_pair("exclude", name);
            }
        }
        if let Some(Token::File(path)) = &self.token {
            read_token(path)?;
        }
        if self.insecure && url.scheme() == "https" {
            tracing::warn!(url = %url, "TLS certificate of the health endpoint NOT verified \
                (insecure opt-in): anyone able to answer on this address can pass the gate");
        }
        let tls = self.tls_config()?;
        let client = Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(self.connect_timeout.min(self.timeout))
            .timeout(self.timeout)
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("kubesafe-health-gate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProbeError::Client(error_chain(&e)))?;
        Ok(HttpProbe {
            client,
            url,
            token: self.token,
            timeout: self.timeout,
        })
    }

    fn tls_config(&self) -> Result<ClientConfig, ProbeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ProbeError::Tls(e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
                    algorithms: provider.signature_verification_algorithms,
                }))
        } else if self.ca_files.is_empty() {
            let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| ProbeError::Tls(format!("system trust store: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        } else {
            let mut roots = RootCertStore::empty();
            for path in &self.ca_files {
                for cert in load_certs(path)? {
                    roots.add(cert).map_err(|e| ProbeError::Pem {
                        path: path.clone(),
                        reason: format!("CA certificate rejected: {e}"),
                    })?;
                }
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.client_cert {
            Some((cert, key)) => {
                let chain = load_certs(cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| ProbeError::Pem {
                    path: key.clone(),
                    reason: format!("no usable private key: {e}"),
                })?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| ProbeError::Pem {
                        path: cert.clone(),
                        reason: format!("client certificate and key rejected: {e}"),
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl HealthProbe for HttpProbe {
    fn describe(&self) -> String {
        format!("GET {}", self.url)
    }

    fn check(&mut self, timeout: Duration) -> ProbeOutcome {
        let started = Instant::now();
        let timeout = timeout.min(self.timeout).max(Duration::from_millis(1));
        let token = match self.bearer() {
            Ok(t) => t,
            Err(e) => return ProbeOutcome::new(ProbeStatus::Error, e, started.elapsed()),
        };
        let mut request = self.client.get(self.url.clone()).timeout(timeout);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = match request.send() {
            Ok(r) => r,
            Err(e) => return classify_error(&e, timeout, started),
        };
        let code = response.status().as_u16();
        let body = match read_body(response) {
            Ok(b) => b,
            Err(e) => return classify_error(&e, timeout, started),
        };
        let latency = started.elapsed();
        let report = verbose::parse(&body);
        let outcome = match code {
            200 => {
                let detail = report
                    .verdict
                    .clone()
                    .unwrap_or_else(|| first_line(&body, "ok"));
                ProbeOutcome::new(ProbeStatus::Healthy, detail, latency)
            }
            401 | 403 => {
                let reason = status_message(&body).unwrap_or_else(|| first_line(&body, ""));
                let what = if code == 401 {
                    "not authenticated"
                } else {
                    "not authorized"
                };
                ProbeOutcome::new(
                    ProbeStatus::Unauthorized,
                    format!(
                        "{what} ({reason}); the server is up but rejected the probe's \
                         credentials: give the probe a client certificate or a bearer token"
                    ),
                    latency,
                )
            }
            _ => {
                let failed: Vec<&str> = report
                    .checks
                    .iter()
                    .filter(|c| c.state == verbose::CheckState::Failed)
                    .map(|c| c.name.as_str())
                    .collect();
                let detail = if failed.is_empty() {
                    first_line(&body, "no body")
                } else {
                    format!("failed checks: {}", failed.join(", "))
                };
                ProbeOutcome::new(ProbeStatus::Unhealthy, detail, latency)
            }
        };
        outcome.with_http_status(code).with_checks(report.checks)
    }
}

fn read_body(mut response: reqwest::blocking::Response) -> Result<String, reqwest::Error> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        match response.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                if buf.len() >= MAX_BODY {
                    break;
                }
            }
            Err(e) => {
                // The blocking reader wraps reqwest errors (timeouts) in io::Error.
                let inner = e.into_inner();
                return match inner.and_then(|b| b.downcast::<reqwest::Error>().ok()) {
                    Some(re) => Err(*re),
                    None => break,
                };
            }
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn classify_error(e: &reqwest::Error, timeout: Duration, started: Instant) -> ProbeOutcome {
    let latency = started.elapsed();
    let chain = error_chain(e);
    // A timeout can surface as a plain I/O error wrapped by the connector, so
    // also treat "took the whole timeout" as timed out.
    if e.is_timeout() || chain.contains("timed out") || latency >= timeout {
        ProbeOutcome::new(
            ProbeStatus::TimedOut,
            format!("no answer within {}: {chain}", crate::clock::human(timeout)),
            latency,
        )
    } else {
        ProbeOutcome::new(ProbeStatus::Unreachable, chain, latency)
    }
}

/// The error and its sources, joined by `: ` (reqwest's top-level message
/// alone says little: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn first_line(body: &str, default: &str) -> String {
    let line = body
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(default);
    line.chars().take(200).collect()
}

/// The `message` of a Kubernetes `Status` object, if the body is one.
fn status_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("message")?.as_str().map(str::to_owned)
}

fn read_token(path: &Path) -> Result<String, ProbeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProbeError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ProbeError::Pem {
            path: path.to_owned(),
            reason: "token file is empty".to_owned(),
        });
    }
    Ok(token.to_owned())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProbeError> {
    let bytes = std::fs::read(path).map_err(|source| ProbeError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProbeError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ProbeError::Pem {
            path: path.to_owned(),
            reason: "no CERTIFICATE block".to_owned(),
        });
    }
    Ok(certs)
}

/// Accepts any server certificate, but still checks the handshake signatures
/// (so the connection is at least with the holder of *some* key). Only built
/// on an explicit insecure opt-in.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_appended() {
        let probe = HttpProbe::builder("https://127.0.0.1:6443/readyz")
            .insecure_skip_tls_verify()
            .verbose(true)
            .exclude("etcd")
            .exclude("poststarthook/rbac/bootstrap-roles")
            .build()
            .unwrap();
        assert_eq!(
            probe.url(),
            "https://127.0.0.1:6443/readyz?verbose&exclude=etcd&exclude=poststarthook%2Frbac%2Fbootstrap-roles"
        );
    }

    #[test]
    fn bad_inputs_name_what_is_wrong() {
        let err = HttpProbe::builder("ftp://x/").build().unwrap_err();
        assert!(err.to_string().contains("ftp://x/"), "{err}");
        let err = HttpProbe::builder("https://127.0.0.1/livez")
            .ca_file("/nonexistent/ca.crt")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
        let err = HttpProbe::builder("https://127.0.0.1/livez")
            .ca_file("/etc/hostname")
            .insecure_skip_tls_verify()
            .build()
            .unwrap_err();
        assert!(matches!(err, ProbeError::Conflict(_)));
    }

    #[test]
    fn empty_pem_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        std::fs::write(&path, "not a pem\n").unwrap();
        let err = HttpProbe::builder("https://127.0.0.1/livez")
            .ca_file(&path)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE block"), "{err}");
    }

    #[test]
    fn the_bearer_token_never_shows_in_debug_output() {
        let builder = HttpProbe::builder("https://127.0.0.1:6443/livez")
            .bearer_token("s3cr3t-t0ken-value")
            .insecure_skip_tls_verify();
        assert!(!format!("{builder:?}").contains("s3cr3t"), "{builder:?}");
        let probe = builder.build().unwrap();
        let debug = format!("{probe:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
    }

    #[test]
    fn refused_connection_is_unreachable() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut probe = HttpProbe::builder(format!("http://127.0.0.1:{port}/livez"))
            .build()
            .unwrap();
        let outcome = probe.check(Duration::from_secs(1));
        assert_eq!(outcome.status, ProbeStatus::Unreachable, "{outcome}");
    }

    #[test]
    fn status_message_reads_kubernetes_status() {
        let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;
        assert_eq!(status_message(body).as_deref(), Some("Unauthorized"));
        assert_eq!(status_message("nope"), None);
    }
}
