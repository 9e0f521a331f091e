//! Grafana Loki sink (feature `loki`): push API, low-cardinality labels, batching,
//! retry with back-off, and a local spool so records survive Loki being down.
//!
//! # Design
//!
//! Every record is first sealed and appended to a local **spool**: a [`FileSink`]
//! at `<spool_dir>/spool.jsonl` (lock held for the sink's lifetime, fsync per record by
//! default, torn-tail recovery, rotation at 1 MiB). The spool holds the chain head, so
//! the chain continues across restarts. The seq of the last record Loki acknowledged
//! is kept in `<spool_dir>/delivered` (replaced atomically). Records are then pushed in
//! spool order; a record is never reported lost: while Loki is down, `append` still
//! succeeds (the record is in the spool) and delivery resumes, in order, on a later
//! `append` or [`flush`](crate::AuditSink::flush) once Loki answers again. Fully
//! delivered rotated spool files are deleted.
//!
//! # Push payload
//!
//! `POST <url>/loki/api/v1/push`, `Content-Type: application/json`, optional
//! `X-Scope-OrgID` (tenant):
//!
//! ```json
//! {"streams":[{"stream":{"action_type":"manifest.edit","app":"kubesafe","status":"completed"},
//!              "values":[["1700000000000000000","<the sealed record line>"]]}]}
//! ```
//!
//! The timestamp is the record's `createdAt` in nanoseconds, as a string. The line is
//! the sealed canonical record, so a verifier can check lines read back from Loki
//! (e.g. with `logcli`) with [`verify_bytes`](crate::verify_bytes) once sorted by `seq`.
//!
//! Labels are **low-cardinality only**: the static labels you configure (default
//! `app="kubesafe"`) plus `action_type` and `status`. Namespaces, resource names,
//! users and ids stay in the line (query them with LogQL `| json`), because every
//! distinct label set is a separate Loki stream.
//!
//! # Retries
//!
//! HTTP 429, 5xx and connection errors are retried with exponential back-off
//! ([`LokiOptions::backoff`] doubling up to [`LokiOptions::backoff_max`]); during
//! `append` at most one attempt is made per call and a failing Loki is not retried
//! before its back-off has elapsed, so appends never block on a dead Loki.
//! [`flush`](crate::AuditSink::flush) retries up to [`LokiOptions::retries`] times and
//! then fails with [`Error::Loki`] (the records stay spooled). Other 4xx answers are
//! permanent errors and are not retried.
//!
//! # TLS
//!
//! `https://` URLs use rustls with the `ring` provider, verifying the server against
//! the operating system's roots plus an optional PEM CA file
//! ([`LokiOptions::ca_file`]).
//!
//! # Testing
//!
//! This sink is tested against a loopback HTTP(S) server that checks the documented
//! push payload — not against a real Loki, which the project's CI cannot install.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chain::{Chain, ChainHead};
use crate::error::{Error, Result};
use crate::file::{FileSink, FileSinkOptions, FsyncPolicy, LockMode};
use crate::record::{AuditRecord, SealedRecord};
use crate::sink::AuditSink;

/// Options of [`LokiSink::open`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LokiOptions {
    /// Loki base URL, e.g. `http://loki.monitoring:3100` (the push path is appended).
    pub url: String,
    /// Directory of the spool (created if missing).
    pub spool_dir: PathBuf,
    /// Static labels added to every stream (default `app="kubesafe"`).
    pub labels: BTreeMap<String, String>,
    /// Push once this many records are pending (default 100); `flush` pushes the rest.
    pub batch_records: usize,
    /// First retry delay (default 200 ms).
    pub backoff: Duration,
    /// Longest retry delay (default 10 s).
    pub backoff_max: Duration,
    /// Attempts made by `flush` before giving up (default 5).
    pub retries: u32,
    /// HTTP request timeout (default 10 s).
    pub timeout: Duration,
    /// Extra trusted CA certificates (PEM) for `https://` URLs.
    pub ca_file: Option<PathBuf>,
    /// Tenant sent as `X-Scope-OrgID`.
    pub tenant: Option<String>,
    /// Spool durability (default fsync every record).
    pub spool_fsync: FsyncPolicy,
}

impl LokiOptions {
    /// Options for `url` with a spool in `spool_dir`.
    pub fn new(url: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        LokiOptions {
            url: url.into(),
            spool_dir: spool_dir.into(),
            labels: BTreeMap::from([("app".to_owned(), "kubesafe".to_owned())]),
            batch_records: 100,
            backoff: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            retries: 5,
            timeout: Duration::from_secs(10),
            ca_file: None,
            tenant: None,
            spool_fsync: FsyncPolicy::EveryRecord,
        }
    }

    /// Adds a static label.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// Sets the batch size.
    pub fn batch_records(mut self, n: usize) -> Self {
        self.batch_records = n;
        self
    }

    /// Sets the back-off range.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.backoff_max = max;
        self
    }

    /// Sets the number of attempts `flush` makes.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Trusts the PEM CA certificates in this file for `https://`.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets the tenant (`X-Scope-OrgID`).
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the spool's fsync policy.
    pub fn spool_fsync(mut self, policy: FsyncPolicy) -> Self {
        self.spool_fsync = policy;
        self
    }
}

/// Labels the sink derives from each record (besides the static ones).
pub const RECORD_LABELS: [&str; 2] = ["action_type", "status"];

fn valid_label_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !n.starts_with("__")
}

/// Outcome of one push attempt.
enum Push {
    Ok,
    Retry(String),
    Fatal(String),
}

/// The Loki sink (see the [module docs](self)).
pub struct LokiSink {
    opts: LokiOptions,
    push_url: String,
    client: reqwest::blocking::Client,
    spool: FileSink,
    delivered_path: PathBuf,
    delivered: u64,
    next_attempt: Option<Instant>,
    backoff: Duration,
    pushes: u64,
}

impl std::fmt::Debug for LokiSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiSink")
            .field("push_url", &self.push_url)
            .field("spool", &self.spool.path())
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

fn tls_config(opts: &LokiOptions) -> Result<rustls::ClientConfig> {
    let tls_err = |message: String| Error::InvalidOption {
        option: "tls",
        message,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extra = Vec::new();
    if let Some(ca) = &opts.ca_file {
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| tls_err(format!("{}: {e}", ca.display())))?
        {
            extra.push(cert.map_err(|e| tls_err(format!("{}: {e}", ca.display())))?);
        }
        if extra.is_empty() {
            return Err(tls_err(format!("{}: no PEM certificate", ca.display())));
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?;
    match rustls_platform_verifier::Verifier::new_with_extra_roots(extra, Arc::clone(&provider)) {
        Ok(v) => Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(v))
            .with_no_client_auth()),
        Err(e) if !opts.url.starts_with("https://") => {
            // Plain HTTP does not need roots; keep a config that trusts nothing.
            tracing::debug!(error = %e, "no platform TLS roots; https Loki URLs would fail");
            Ok(builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth())
        }
        Err(e) => Err(tls_err(format!(
            "loading the platform's root certificates: {e}"
        ))),
    }
}

impl LokiSink {
    /// Opens the spool (recovering a torn tail) and prepares the HTTP client.
    pub fn open(opts: LokiOptions) -> Result<Self> {
        if !(opts.url.starts_with("http://") || opts.url.starts_with("https://")) {
            return Err(Error::InvalidOption {
                option: "url",
                message: format!("{:?} is not an http:// or https:// URL", opts.url),
            });
        }
        if opts.batch_records == 0 {
            return Err(Error::InvalidOption {
                option: "batch_records",
                message: "must be at least 1".into(),
            });
        }
        for (k, v) in &opts.labels {
            if !valid_label_name(k) || RECORD_LABELS.contains(&k.as_str()) {
                return Err(Error::InvalidOption {
                    option: "labels",
                    message: format!("invalid or reserved label name {k:?}"),
                });
            }
            if v.is_empty() {
                return Err(Error::InvalidOption {
                    option: "labels",
                    message: format!("label {k:?} has an empty value"),
                });
            }
        }
        std::fs::create_dir_all(&opts.spool_dir)
            .map_err(|e| Error::io("create", &opts.spool_dir, e))?;
        let spool = FileSink::open(
            opts.spool_dir.join("spool.jsonl"),
            FileSinkOptions::new()
                .lock(LockMode::Held)
                .fsync(opts.spool_fsync)
                .rotate_bytes(1 << 20),
        )?;
        let delivered_path = opts.spool_dir.join("delivered");
        let delivered = match std::fs::read_to_string(&delivered_path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| Error::Corrupt {
                path: delivered_path.clone(),
                line: 1,
                message: format!("{s:?} is not a seq"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io("read", &delivered_path, e)),
        };
        let client = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls_config(&opts)?)
            .timeout(opts.timeout)
            .build()
            .map_err(|e| Error::InvalidOption {
                option: "url",
                message: format!("building the HTTP client: {e}"),
            })?;
        let push_url = format!("{}/loki/api/v1/push", opts.url.trim_end_matches('/'));
        let backoff = opts.backoff;
        Ok(LokiSink {
            opts,
            push_url,
            client,
            spool,
            delivered_path,
            delivered,
            next_attempt: None,
            backoff,
            pushes: 0,
        })
    }

    /// The seq of the last record Loki acknowledged.
    pub fn delivered_seq(&self) -> u64 {
        self.delivered
    }

    /// Records sealed but not yet acknowledged by Loki.
    pub fn pending(&mut self) -> Result<u64> {
        Ok(self.spool.head()?.seq.saturating_sub(self.delivered))
    }

    /// Successful push requests made by this sink.
    pub fn pushes(&self) -> u64 {
        self.pushes
    }

    /// The spool file sink (for verification of what was sealed locally).
    pub fn spool(&self) -> &FileSink {
        &self.spool
    }

    /// Undelivered records in spool order, at most `max`.
    fn undelivered(&self, max: usize) -> Result<Vec<SealedRecord>> {
        let mut out = Vec::new();
        let delivered = self.delivered;
        for p in crate::file::log_files(self.spool.path())? {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
            for (i, line) in text.lines().enumerate() {
                let head = crate::verify::read_head(line.as_bytes()).map_err(|message| {
                    Error::Corrupt {
                        path: p.clone(),
                        line: i as u64 + 1,
                        message,
                    }
                })?;
                if head.seq <= delivered {
                    continue;
                }
                let r = SealedRecord::parse_line(line).map_err(|message| Error::Corrupt {
                    path: p.clone(),
                    line: i as u64 + 1,
                    message,
                })?;
                out.push(r);
                if out.len() >= max {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// The JSON body of one push.
    pub fn payload(&self, records: &[SealedRecord]) -> String {
        type Stream = (BTreeMap<String, String>, Vec<[String; 2]>);
        let mut streams: Vec<Stream> = Vec::new();
        for r in records {
            let mut labels = self.opts.labels.clone();
            labels.insert("action_type".into(), r.record.action_type.clone());
            labels.insert("status".into(), r.record.status.as_str().into());
            let ts = r.record.created_at.as_nanosecond().max(0).to_string();
            let entry = [ts, r.line().to_owned()];
            match streams.iter_mut().find(|(l, _)| *l == labels) {
                Some((_, values)) => values.push(entry),
                None => streams.push((labels, vec![entry])),
            }
        }
        let streams: Vec<serde_json::Value> = streams
            .into_iter()
            .map(|(labels, values)| serde_json::json!({"stream": labels, "values": values}))
            .collect();
        serde_json::json!({ "streams": streams }).to_string()
    }

    fn push_once(&mut self, records: &[SealedRecord]) -> Push {
        let mut req = self
            .client
            .post(&self.push_url)
            .header("Content-Type", "application/json")
            .body(self.payload(records));
        if let Some(t) = &self.opts.tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        match req.send() {
            Ok(resp) if resp.status().is_success() => Push::Ok,
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().unwrap_or_default();
                let msg = format!(
                    "HTTP {status}: {}",
                    body.chars().take(300).collect::<String>()
                );
                if status.as_u16() == 429 || status.is_server_error() {
                    Push::Retry(msg)
                } else {
                    Push::Fatal(msg)
                }
            }
            Err(e) => Push::Retry(e.to_string()),
        }
    }

    fn mark_delivered(&mut self, seq: u64) -> Result<()> {
        let tmp = self.delivered_path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(format!("{seq}\n").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.delivered_path)
        };
        write().map_err(|e| Error::io("write", &self.delivered_path, e))?;
        self.delivered = seq;
        // Delete rotated spool files that are fully delivered (never the newest one,
        // which may hold the chain head while the active file is empty).
        let rotated = crate::file::log_files(self.spool.path())?;
        let rotated: Vec<&PathBuf> = rotated
            .iter()
            .filter(|p| p.as_path() != self.spool.path())
            .collect();
        for p in rotated.iter().take(rotated.len().saturating_sub(1)) {
            if last_seq(p)? <= seq {
                std::fs::remove_file(p).map_err(|e| Error::io("remove", p.as_path(), e))?;
                tracing::debug!(file = %p.display(), "delivered spool file removed");
            }
        }
        Ok(())
    }

    /// Tries to deliver everything pending; `attempts` bounds tries per batch.
    fn deliver(&mut self, attempts: u32, sleep: bool) -> Result<()> {
        loop {
            let batch = self.undelivered(self.opts.batch_records)?;
            let Some(last) = batch.last().map(|r| r.seq) else {
                return Ok(());
            };
            let mut tries = 0;
            loop {
                if !sleep
                    && let Some(t) = self.next_attempt
                    && Instant::now() < t
                {
                    return Err(Error::Loki {
                        url: self.push_url.clone(),
                        message: "backing off after a failed push".into(),
                    });
                }
                tries += 1;
                match self.push_once(&batch) {
                    Push::Ok => {
                        self.pushes += 1;
                        self.backoff = self.opts.backoff;
                        self.next_attempt = None;
                        self.mark_delivered(last)?;
                        break;
                    }
                    Push::Fatal(message) => {
                        return Err(Error::Loki {
                            url: self.push_url.clone(),
                            message,
                        });
                    }
                    Push::Retry(message) => {
                        tracing::warn!(url = %self.push_url, attempt = tries, error = %message, backoff_ms = self.backoff.as_millis() as u64, "loki push failed; records stay spooled");
                        let wait = self.backoff;
                        self.backoff = (self.backoff * 2).min(self.opts.backoff_max);
                        self.next_attempt = Some(Instant::now() + wait);
                        if tries >= attempts {
                            return Err(Error::Loki {
                                url: self.push_url.clone(),
                                message,
                            });
                        }
                        if sleep {
                            std::thread::sleep(wait);
                        }
                    }
                }
            }
        }
    }
}

fn last_seq(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    Ok(text
        .lines()
        .last()
        .and_then(|l| crate::verify::read_head(l.as_bytes()).ok())
        .map(|h| h.seq)
        .unwrap_or(0))
}

impl AuditSink for LokiSink {
    fn append_batch(
        &mut self,
        chain: &Chain,
        records: &[AuditRecord],
    ) -> Result<Vec<SealedRecord>> {
        let sealed = self.spool.append_batch(chain, records)?;
        let head = sealed.last().map(|s| s.seq).unwrap_or(self.delivered);
        if head.saturating_sub(self.delivered) >= self.opts.batch_records as u64 {
            // One attempt, no sleeping: the records are safe in the spool either way.
            if let Err(e) = self.deliver(1, false) {
                tracing::debug!(error = %e, "loki delivery deferred");
            }
        }
        Ok(sealed)
    }

    fn head(&mut self) -> Result<ChainHead> {
        self.spool.head()
    }

    /// Pushes everything pending, retrying with back-off; fails if Loki stays down.
    fn flush(&mut self) -> Result<()> {
        self.spool.flush()?;
        self.next_attempt = None;
        self.deliver(self.opts.retries.max(1), true)
    }
}
