//! Parsing of the verbose health output of Kubernetes components.
//!
//! `GET /livez?verbose` (also `/readyz`, `/healthz`, and any failing request
//! even without `?verbose`) answers one line per check, then a verdict:
//!
//! ```text
//! [+]ping ok
//! [+]log ok
//! [-]etcd failed: reason withheld
//! [+]poststarthook/start-apiextensions-informers ok
//! [+]informer-sync excluded: ok
//! livez check failed
//! ```

use serde::{Deserialize, Serialize};

/// The state of one named check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckState {
    /// `[+]name ok`.
    Passed,
    /// `[-]name failed: ...`.
    Failed,
    /// `[+]name excluded: ok` — skipped because the request excluded it.
    Excluded,
}

/// One check of a verbose health report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCheck {
    /// The check's name, e.g. `etcd` or `poststarthook/rbac/bootstrap-roles`.
    pub name: String,
    /// Whether it passed, failed or was excluded.
    pub state: CheckState,
    /// The text after the name (`ok`, `failed: reason withheld`).
    pub message: String,
}

/// A parsed verbose health report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerboseReport {
    /// The checks, in the server's order.
    pub checks: Vec<NamedCheck>,
    /// The verdict line (`livez check passed`), if present.
    pub verdict: Option<String>,
    /// Other non-empty lines, such as
    /// `warn: some health checks cannot be excluded: no matches for "foo"`.
    pub other: Vec<String>,
}

impl VerboseReport {
    /// Whether the verdict line says `... check passed`; `None` without a
    /// verdict line.
    #[must_use]
    pub fn passed(&self) -> Option<bool> {
        self.verdict.as_deref().map(|v| v.ends_with("passed"))
    }
}

/// Parses verbose health output. Never fails: lines it does not understand
/// land in [`VerboseReport::other`].
#[must_use]
pub fn parse(body: &str) -> VerboseReport {
    let mut report = VerboseReport::default();
    for raw in body.lines() {
        let line = raw.trim_end();
        if line.is_empty() {
            continue;
        }
        let (passed, rest) = if let Some(rest) = line.strip_prefix("[+]") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("[-]") {
            (false, rest)
        } else {
            if line.ends_with(" check passed") || line.ends_with(" check failed") {
                report.verdict = Some(line.to_owned());
            } else {
                report.other.push(line.to_owned());
            }
            continue;
        };
        let (name, message) = match rest.split_once(' ') {
            Some((name, message)) => (name, message.trim()),
            None => (rest, ""),
        };
        let state = if !passed {
            CheckState::Failed
        } else if message.starts_with("excluded") {
            CheckState::Excluded
        } else {
            CheckState::Passed
        };
        report.checks.push(NamedCheck {
            name: name.to_owned(),
            state,
            message: message.to_owned(),
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILING: &str = "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n\
[+]poststarthook/start-apiextensions-informers ok\n[+]informer-sync excluded: ok\n\
warn: some health checks cannot be excluded: no matches for \"nope\"\nlivez check failed\n";

    #[test]
    fn parses_passed_failed_and_excluded_checks() {
        let r = parse(FAILING);
        let names: Vec<_> = r
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.state))
            .collect();
        assert_eq!(
            names,
            vec![
                ("ping", CheckState::Passed),
                ("log", CheckState::Passed),
                ("etcd", CheckState::Failed),
                (
                    "poststarthook/start-apiextensions-informers",
                    CheckState::Passed
                ),
                ("informer-sync", CheckState::Excluded),
            ]
        );
        assert_eq!(r.checks[2].message, "failed: reason withheld");
        assert_eq!(r.verdict.as_deref(), Some("livez check failed"));
        assert_eq!(r.passed(), Some(false));
        assert_eq!(r.other.len(), 1);
        assert!(r.other[0].starts_with("warn:"));
    }

    #[test]
    fn parses_passing_report_with_crlf() {
        let r = parse("[+]ping ok\r\n[+]etcd ok\r\nreadyz check passed\r\n");
        assert_eq!(r.checks.len(), 2);
        assert!(r.checks.iter().all(|c| c.state == CheckState::Passed));
        assert_eq!(r.passed(), Some(true));
    }

    #[test]
    fn plain_ok_has_no_checks_and_no_verdict() {
        let r = parse("ok");
        assert!(r.checks.is_empty());
        assert_eq!(r.passed(), None);
        assert_eq!(r.other, vec!["ok".to_owned()]);
    }

    #[test]
    fn check_without_message() {
        let r = parse("[-]shutdown\n");
        assert_eq!(r.checks[0].name, "shutdown");
        assert_eq!(r.checks[0].state, CheckState::Failed);
        assert_eq!(r.checks[0].message, "");
    }

    #[test]
    fn garbage_never_panics() {
        for s in ["", "[+]", "[-]", "[+] ", "\n\n", "[x]foo ok", "ééé [+]ping"] {
            let _ = parse(s);
        }
    }
}
