//! Query filters and statistics shared by the file and PostgreSQL sinks.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::record::{SealedRecord, Status};

/// Which records to return. All set conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Filter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this action type (exact match).
    pub action_type: Option<String>,
    /// Only this namespace (exact match).
    pub namespace: Option<String>,
    /// Only records created at or after this time.
    pub since: Option<Timestamp>,
    /// Only records created strictly before this time.
    pub until: Option<Timestamp>,
    /// At most this many records (the first ones in chain order).
    pub limit: Option<usize>,
}

impl Filter {
    /// Matches everything.
    pub fn new() -> Self {
        Filter::default()
    }

    /// Only this status.
    pub fn status(mut self, s: Status) -> Self {
        self.status = Some(s);
        self
    }

    /// Only this action type.
    pub fn action_type(mut self, a: impl Into<String>) -> Self {
        self.action_type = Some(a.into());
        self
    }

    /// Only this namespace.
    pub fn namespace(mut self, n: impl Into<String>) -> Self {
        self.namespace = Some(n.into());
        self
    }

    /// Created at or after `t`.
    pub fn since(mut self, t: Timestamp) -> Self {
        self.since = Some(t);
        self
    }

    /// Created before `t`.
    pub fn until(mut self, t: Timestamp) -> Self {
        self.until = Some(t);
        self
    }

    /// At most `n` records.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether a record matches (ignores `limit`).
    pub fn matches(&self, r: &SealedRecord) -> bool {
        let rec = &r.record;
        self.status.is_none_or(|s| s == rec.status)
            && self
                .action_type
                .as_deref()
                .is_none_or(|a| a == rec.action_type)
            && self
                .namespace
                .as_deref()
                .is_none_or(|n| rec.namespace.as_deref() == Some(n))
            && self.since.is_none_or(|t| rec.created_at >= t)
            && self.until.is_none_or(|t| rec.created_at < t)
    }
}

/// Counts over a log.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Stats {
    /// Number of records.
    pub total: u64,
    /// Records per status (`"completed"`, ...).
    pub by_status: BTreeMap<String, u64>,
    /// Records per action type.
    pub by_action_type: BTreeMap<String, u64>,
    /// Mean `durationMs` over records that have one.
    pub avg_duration_ms: Option<f64>,
    /// Earliest `createdAt`.
    pub first_created_at: Option<Timestamp>,
    /// Latest `createdAt`.
    pub last_created_at: Option<Timestamp>,
    /// Highest seq.
    pub last_seq: u64,
}

/// Accumulates [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct StatsBuilder {
    stats: Stats,
    duration_sum: f64,
    duration_n: u64,
}

impl StatsBuilder {
    pub(crate) fn add(&mut self, r: &SealedRecord) {
        let s = &mut self.stats;
        s.total += 1;
        *s.by_status
            .entry(r.record.status.as_str().to_owned())
            .or_default() += 1;
        *s.by_action_type
            .entry(r.record.action_type.clone())
            .or_default() += 1;
        if let Some(d) = r.record.duration_ms {
            self.duration_sum += d as f64;
            self.duration_n += 1;
        }
        let t = r.record.created_at;
        s.first_created_at = Some(s.first_created_at.map_or(t, |f| f.min(t)));
        s.last_created_at = Some(s.last_created_at.map_or(t, |l| l.max(t)));
        s.last_seq = s.last_seq.max(r.seq);
    }

    pub(crate) fn finish(mut self) -> Stats {
        if self.duration_n > 0 {
            self.stats.avg_duration_ms = Some(self.duration_sum / self.duration_n as f64);
        }
        self.stats
    }
}
