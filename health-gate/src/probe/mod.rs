//! Health probes: one attempt at asking a component whether it is healthy.
//!
//! A [`HealthProbe`] answers with a [`ProbeOutcome`] whose [`ProbeStatus`]
//! keeps apart the cases a gate must treat differently: healthy, answering but
//! unhealthy, *credentials rejected* (401/403 — the component is up, the probe
//! is not allowed to ask), not answering (refused, TLS failure) and timed out.
//!
//! Three probes ship with the crate: [`HttpProbe`] (HTTP(S) health endpoints
//! such as kube-apiserver's `/livez`, `/readyz`, `/healthz`), [`CommandProbe`]
//! (run a program, exit code 0 is healthy) and [`FnProbe`] (a closure).

mod closure;
mod command;
mod http;
pub mod verbose;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use closure::{BoxedProbeFn, FnProbe};
pub use command::CommandProbe;
pub use http::{HttpProbe, HttpProbeBuilder};
pub use verbose::{CheckState, NamedCheck};

/// A health check of one component.
///
/// Implementations must return within (about) the `timeout` they are given:
/// the gate passes the smaller of its per-probe timeout and the time left
/// before its deadline, and relies on the probe to honour it. The built-in
/// probes do; a closure given to [`FnProbe`] is trusted to.
pub trait HealthProbe {
    /// A short description for events and logs, e.g. the URL probed.
    fn describe(&self) -> String;

    /// Makes one attempt and reports what it saw.
    fn check(&mut self, timeout: Duration) -> ProbeOutcome;
}

impl<P: HealthProbe + ?Sized> HealthProbe for Box<P> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn check(&mut self, timeout: Duration) -> ProbeOutcome {
        (**self).check(timeout)
    }
}

/// What one probe attempt concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProbeStatus {
    /// The component reports healthy (HTTP 200, exit code 0, ...).
    Healthy,
    /// The component answered and reports a problem (HTTP 5xx, a failed
    /// check, a non-zero exit code).
    Unhealthy,
    /// The component answered but rejected the probe's credentials (HTTP 401
    /// or 403). It is up, but its health is unknown: after
    /// `--anonymous-auth=false` an anonymous probe ends here, and the fix is
    /// to give the probe a client certificate or a token, not to roll back.
    Unauthorized,
    /// Nothing answered: connection refused, reset, TLS handshake failure.
    Unreachable,
    /// The attempt did not finish within its timeout (for example a server
    /// that accepts connections and never answers).
    TimedOut,
    /// The probe itself could not run (bad configuration, a program that
    /// cannot be started). Never healthy.
    Error,
}

impl ProbeStatus {
    /// Whether this status means healthy.
    #[must_use]
    pub fn is_healthy(self) -> bool {
        self == Self::Healthy
    }

    /// Whether the component answered at all (healthy, unhealthy or
    /// unauthorized): a process is listening.
    #[must_use]
    pub fn is_answering(self) -> bool {
        matches!(self, Self::Healthy | Self::Unhealthy | Self::Unauthorized)
    }
}

impl std::fmt::Display for ProbeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unauthorized => "unauthorized",
            Self::Unreachable => "unreachable",
            Self::TimedOut => "timed out",
            Self::Error => "probe error",
        })
    }
}

/// The result of one probe attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProbeOutcome {
    /// The conclusion.
    pub status: ProbeStatus,
    /// The HTTP status code, for HTTP probes that got an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Named checks parsed from verbose output (`[+]ping ok`,
    /// `[-]etcd failed: reason withheld`), in the order the server listed
    /// them; empty when the endpoint gave none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<NamedCheck>,
    /// A one-line human explanation (an error chain, the failing checks, the
    /// tail of a command's stderr).
    pub detail: String,
    /// How long the attempt took.
    #[serde(with = "crate::clock::duration_ms", rename = "latency_ms")]
    pub latency: Duration,
}

impl ProbeOutcome {
    /// Builds an outcome with no HTTP status and no checks.
    #[must_use]
    pub fn new(status: ProbeStatus, detail: impl Into<String>, latency: Duration) -> Self {
        Self {
            status,
            http_status: None,
            checks: Vec::new(),
            detail: detail.into(),
            latency,
        }
    }

    /// A healthy outcome.
    #[must_use]
    pub fn healthy(detail: impl Into<String>) -> Self {
        Self::new(ProbeStatus::Healthy, detail, Duration::ZERO)
    }

    /// An unhealthy outcome.
    #[must_use]
    pub fn unhealthy(detail: impl Into<String>) -> Self {
        Self::new(ProbeStatus::Unhealthy, detail, Duration::ZERO)
    }

    /// Sets the HTTP status code.
    #[must_use]
    pub fn with_http_status(mut self, code: u16) -> Self {
        self.http_status = Some(code);
        self
    }

    /// Sets the parsed checks.
    #[must_use]
    pub fn with_checks(mut self, checks: Vec<NamedCheck>) -> Self {
        self.checks = checks;
        self
    }

    /// Sets the latency.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Whether the outcome is healthy.
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        self.status.is_healthy()
    }

    /// The checks that failed, by name.
    pub fn failed_checks(&self) -> impl Iterator<Item = &str> {
        self.checks
            .iter()
            .filter(|c| c.state == CheckState::Failed)
            .map(|c| c.name.as_str())
    }
}

impl std::fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(code) = self.http_status {
            write!(f, " (HTTP {code})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}
