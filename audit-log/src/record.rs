//! Audit records: what the caller supplies ([`AuditRecord`]) and what the log stores
//! ([`SealedRecord`]).

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canon;
use crate::chain::ChainHash;
use crate::error::{Error, Result};

/// Deepest nesting accepted inside the free-form fields (`parameters`, `result`, ...).
pub const MAX_VALUE_DEPTH: usize = 64;

/// The longest stored record line, in bytes (without its newline): 64 MiB.
///
/// A writer refuses to seal a larger record ([`Error::InvalidRecord`]), so readers never
/// need to hold a longer line in memory: the verifier reports a longer line as a bad
/// record without buffering it (see [`VerifyOptions::max_line_bytes`](crate::VerifyOptions::max_line_bytes)),
/// and queries and the file sink's tail read refuse it.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// The format version written in every record (`"v": 1`).
pub const FORMAT_VERSION: u64 = 1;

/// Lifecycle status of an audited action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// Requested, not started.
    Pending,
    /// Running.
    InProgress,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Refused (by policy, admission or an operator).
    Rejected,
}

impl Status {
    /// All statuses, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::InProgress,
        Status::Completed,
        Status::Failed,
        Status::Rejected,
    ];

    /// The JSON spelling (`"in_progress"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "status",
                    format!(
                        "{s:?} is not one of pending, in_progress, completed, failed, rejected"
                    ),
                )
            })
    }
}

/// One audited action, as supplied by the caller (before sealing).
///
/// JSON field names are camelCase and stable. Optional fields that are `None` (and an
/// empty `parameters` object) are omitted from the stored line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditRecord {
    /// What was done, e.g. `"manifest.edit"` (required, non-empty).
    pub action_type: String,
    /// Lifecycle status.
    pub status: Status,
    /// Kubernetes namespace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Resource type, e.g. `"Pod"` or `"static-pod-manifest"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Action parameters (free-form JSON object).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    /// Who asked for the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// The policy decision that allowed or refused it (free-form JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_decision: Option<Value>,
    /// An opaque signature the caller holds for the action (for instance a
    /// `kubesafe-signing` envelope MAC). Stored and hashed, never interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Value>,
    /// Duration in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Error message when the action failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Result (free-form JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// When the action was requested (defaults to now when parsed without it).
    #[serde(default = "Timestamp::now")]
    pub created_at: Timestamp,
    /// When the action finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
}

impl AuditRecord {
    /// A record with the required fields, created now.
    pub fn new(action_type: impl Into<String>, status: Status) -> Self {
        AuditRecord {
            action_type: action_type.into(),
            status,
            namespace: None,
            resource_type: None,
            resource_name: None,
            parameters: Map::new(),
            requested_by: None,
            policy_decision: None,
            signature: None,
            duration_ms: None,
            error_message: None,
            result: None,
            created_at: Timestamp::now(),
            completed_at: None,
        }
    }

    /// Parses a caller-supplied record from JSON (unknown fields are rejected).
    pub fn from_json(text: &str) -> Result<Self> {
        let rec: AuditRecord = serde_json::from_str(text).map_err(|e| {
            Error::invalid(
                "record",
                format!("line {} column {}: {e}", e.line(), e.column()),
            )
        })?;
        rec.validate()?;
        Ok(rec)
    }

    /// Sets the namespace.
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// Sets resource type and name.
    pub fn resource(mut self, kind: impl Into<String>, name: impl Into<String>) -> Self {
        self.resource_type = Some(kind.into());
        self.resource_name = Some(name.into());
        self
    }

    /// Adds one parameter.
    pub fn parameter(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.parameters.insert(key.into(), value.into());
        self
    }

    /// Sets who requested the action.
    pub fn requested_by(mut self, who: impl Into<String>) -> Self {
        self.requested_by = Some(who.into());
        self
    }

    /// Sets the policy decision.
    pub fn policy_decision(mut self, decision: impl Into<Value>) -> Self {
        self.policy_decision = Some(decision.into());
        self
    }

    /// Sets the opaque signature value.
    pub fn signature(mut self, signature: impl Into<Value>) -> Self {
        self.signature = Some(signature.into());
        self
    }

    /// Sets the duration in milliseconds.
    pub fn duration_ms(mut self, ms: u64) -> Self {
        self.duration_ms = Some(ms);
        self
    }

    /// Sets the error message.
    pub fn error_message(mut self, msg: impl Into<String>) -> Self {
        self.error_message = Some(msg.into());
        self
    }

    /// Sets the result.
    pub fn result(mut self, result: impl Into<Value>) -> Self {
        self.result = Some(result.into());
        self
    }

    /// Sets the creation time.
    pub fn created_at(mut self, at: Timestamp) -> Self {
        self.created_at = at;
        self
    }

    /// Sets the completion time.
    pub fn completed_at(mut self, at: Timestamp) -> Self {
        self.completed_at = Some(at);
        self
    }

    /// Checks the record can be sealed: non-empty `actionType`, free-form values no
    /// deeper than [`MAX_VALUE_DEPTH`].
    pub fn validate(&self) -> Result<()> {
        if self.action_type.is_empty() {
            return Err(Error::invalid("actionType", "must not be empty"));
        }
        let deep = |name: &str, v: &Value| {
            if canon::check_depth(v, MAX_VALUE_DEPTH) {
                Ok(())
            } else {
                Err(Error::invalid(
                    name,
                    format!("nested deeper than {MAX_VALUE_DEPTH} levels"),
                ))
            }
        };
        for (k, v) in &self.parameters {
            deep(&format!("parameters.{k}"), v)?;
        }
        for (name, v) in [
            ("policyDecision", &self.policy_decision),
            ("signature", &self.signature),
            ("result", &self.result),
        ] {
            if let Some(v) = v {
                deep(name, v)?;
            }
        }
        Ok(())
    }
}

/// A record as stored: the caller's fields plus the chain fields.
///
/// The stored line is the canonical JSON of all fields (see the
/// [crate docs](crate#what-is-hashed)); [`line`](SealedRecord::line) returns it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SealedRecord {
    /// Position in the chain, starting at 1.
    pub seq: u64,
    /// Hash of the previous record ([`ChainHash::ZERO`] for seq 1).
    pub prev_hash: ChainHash,
    /// This record's hash.
    pub hash: ChainHash,
    /// Id of the HMAC key, when keyed.
    pub key_id: Option<String>,
    /// Key check value of that key, when keyed (see [`AuditKey::key_check`](crate::AuditKey::key_check)).
    pub key_check: Option<String>,
    /// The caller's fields.
    pub record: AuditRecord,
    pub(crate) line: String,
}

impl SealedRecord {
    /// The stored canonical JSON line (without the trailing newline).
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Parses a stored line (no integrity check: use [`verify`](crate::verify) for that).
    pub fn parse_line(line: &str) -> std::result::Result<Self, String> {
        let w: WireRecord = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if w.v != FORMAT_VERSION {
            return Err(format!("unsupported format version {}", w.v));
        }
        Ok(SealedRecord {
            seq: w.seq,
            prev_hash: w.prev_hash,
            hash: w.hash,
            key_id: w.key_id,
            key_check: w.key_check,
            record: AuditRecord {
                action_type: w.action_type,
                status: w.status,
                namespace: w.namespace,
                resource_type: w.resource_type,
                resource_name: w.resource_name,
                parameters: w.parameters,
                requested_by: w.requested_by,
                policy_decision: w.policy_decision,
                signature: w.signature,
                duration_ms: w.duration_ms,
                error_message: w.error_message,
                result: w.result,
                created_at: w.created_at,
                completed_at: w.completed_at,
            },
            line: line.to_owned(),
        })
    }

    /// The chain head this record forms.
    pub fn head(&self) -> crate::ChainHead {
        crate::ChainHead {
            seq: self.seq,
            hash: self.hash,
        }
    }
}

impl Serialize for SealedRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        // The canonical line is the serialization; re-emit it as a JSON value.
        let v: Value = serde_json::from_str(&self.line).map_err(serde::ser::Error::custom)?;
        v.serialize(s)
    }
}

/// Tolerant parse of a stored line (unknown fields ignored, for forward compatibility).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRecord {
    seq: u64,
    prev_hash: ChainHash,
    hash: ChainHash,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    key_check: Option<String>,
    v: u64,
    action_type: String,
    status: Status,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    resource_type: Option<String>,
    #[serde(default)]
    resource_name: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    requested_by: Option<String>,
    #[serde(default)]
    policy_decision: Option<Value>,
    #[serde(default)]
    signature: Option<Value>,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    result: Option<Value>,
    created_at: Timestamp,
    #[serde(default)]
    completed_at: Option<Timestamp>,
}

/// Writes the canonical JSON of a record without its `hash` member and returns the
/// byte index where `,"hash":"…"` belongs (keys are in RFC 8785 order; `actionType`
/// always precedes `hash`).
pub(crate) fn write_canonical(
    r: &AuditRecord,
    seq: u64,
    prev_hash: &ChainHash,
    key_id: Option<&str>,
    key_check: Option<&str>,
    out: &mut Vec<u8>,
) -> usize {
    fn key(out: &mut Vec<u8>, k: &[u8]) {
        out.push(b',');
        out.push(b'"');
        out.extend_from_slice(k);
        out.extend_from_slice(b"\":");
    }
    fn opt_str(out: &mut Vec<u8>, k: &[u8], v: Option<&str>) {
        if let Some(v) = v {
            key(out, k);
            canon::write_str(v, out);
        }
    }
    fn opt_val(out: &mut Vec<u8>, k: &[u8], v: Option<&Value>) {
        if let Some(v) = v {
            key(out, k);
            canon::write_value(v, out);
        }
    }
    out.extend_from_slice(b"{\"actionType\":");
    canon::write_str(&r.action_type, out);
    opt_str(
        out,
        b"completedAt",
        r.completed_at.map(|t| t.to_string()).as_deref(),
    );
    opt_str(out, b"createdAt", Some(&r.created_at.to_string()));
    if let Some(d) = r.duration_ms {
        key(out, b"durationMs");
        out.extend_from_slice(d.to_string().as_bytes());
    }
    opt_str(out, b"errorMessage", r.error_message.as_deref());
    let hash_at = out.len();
    opt_str(out, b"keyCheck", key_check);
    opt_str(out, b"keyId", key_id);
    opt_str(out, b"namespace", r.namespace.as_deref());
    if !r.parameters.is_empty() {
        key(out, b"parameters");
        let mut entries: Vec<(&String, &Value)> = r.parameters.iter().collect();
        entries.sort_by(|a, b| canon::key_cmp(a.0, b.0));
        out.push(b'{');
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            canon::write_str(k, out);
            out.push(b':');
            canon::write_value(v, out);
        }
        out.push(b'}');
    }
    opt_val(out, b"policyDecision", r.policy_decision.as_ref());
    key(out, b"prevHash");
    out.push(b'"');
    out.extend_from_slice(prev_hash.to_hex().as_bytes());
    out.push(b'"');
    opt_str(out, b"requestedBy", r.requested_by.as_deref());
    opt_str(out, b"resourceName", r.resource_name.as_deref());
    opt_str(out, b"resourceType", r.resource_type.as_deref());
    opt_val(out, b"result", r.result.as_ref());
    key(out, b"seq");
    out.extend_from_slice(seq.to_string().as_bytes());
    opt_val(out, b"signature", r.signature.as_ref());
    key(out, b"status");
    canon::write_str(r.status.as_str(), out);
    key(out, b"v");
    out.extend_from_slice(FORMAT_VERSION.to_string().as_bytes());
    out.push(b'}');
    hash_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{AuditKey, Chain, ChainHead};
    use serde_json::json;

    fn full_record() -> AuditRecord {
        AuditRecord::new("manifest.edit", Status::Completed)
            .namespace("kube-system")
            .resource("static-pod-manifest", "kube-apiserver")
            .parameter("flag", "--profiling")
            .parameter("value", false)
            .parameter("ünïcode", json!({"b": [1, 2.5, null], "a": "x\ny"}))
            .requested_by("alice@example.com")
            .policy_decision(json!({"allowed": true, "rule": "cis-1.2.18"}))
            .signature(json!({"alg": "HS256", "mac": "abcd"}))
            .duration_ms(1234)
            .error_message("none \"quoted\"")
            .result(json!({"restarted": true}))
            .created_at("2025-01-02T03:04:05.123456789Z".parse().unwrap())
            .completed_at("2025-01-02T03:04:06Z".parse().unwrap())
    }

    #[test]
    fn manual_canonical_writer_matches_generic_canonicalization() {
        let key = AuditKey::new("k1", vec![1; 32]).unwrap();
        for chain in [Chain::unkeyed(), Chain::keyed(key)] {
            for rec in [full_record(), AuditRecord::new("x", Status::Pending)] {
                let sealed = chain.seal(&ChainHead::default(), &rec).unwrap();
                let v: Value = serde_json::from_str(sealed.line()).unwrap();
                let mut generic = Vec::new();
                canon::write_value(&v, &mut generic);
                assert_eq!(String::from_utf8(generic).unwrap(), sealed.line());
                // And the serde view of the caller's fields agrees with the line.
                let mut from_serde = serde_json::to_value(&rec).unwrap();
                let obj = from_serde.as_object_mut().unwrap();
                for k in ["seq", "prevHash", "hash", "keyId", "keyCheck", "v"] {
                    if let Some(x) = v.get(k) {
                        obj.insert(k.into(), x.clone());
                    }
                }
                assert_eq!(from_serde, v);
            }
        }
    }

    #[test]
    fn parse_line_round_trips() {
        let sealed = Chain::unkeyed()
            .seal(&ChainHead::default(), &full_record())
            .unwrap();
        let back = SealedRecord::parse_line(sealed.line()).unwrap();
        assert_eq!(back, sealed);
        assert_eq!(back.seq, 1);
        assert_eq!(back.prev_hash, ChainHash::ZERO);
    }

    #[test]
    fn input_rejects_unknown_fields_and_bad_values() {
        let e = AuditRecord::from_json(r#"{"actionType":"a","status":"completed","sequence":1}"#)
            .unwrap_err();
        assert!(e.to_string().contains("sequence"), "{e}");
        let e = AuditRecord::from_json(r#"{"actionType":"a","status":"done"}"#).unwrap_err();
        assert!(e.to_string().contains("done"), "{e}");
        let e = AuditRecord::from_json(r#"{"actionType":"","status":"failed"}"#).unwrap_err();
        assert!(e.to_string().contains("actionType"), "{e}");
        let r = AuditRecord::from_json(r#"{"actionType":"a","status":"in_progress"}"#).unwrap();
        assert_eq!(r.status, Status::InProgress);
    }
}
