//! Typed remediation actions, for the executor that carries them out.
//!
//! The envelope's `action` may be any JSON value; [`ActionRequest`] is the typed form the
//! kubesafe executor and [`crate::admission`] understand:
//!
//! ```json
//! {"type":"scale_deployment","namespace":"shop","name":"web","params":{"replicas":3},
//!  "idempotency_key":"7f9c…","requested_by":"remediation-engine"}
//! ```
//!
//! | `type` | `name` is a | `params` |
//! |--------|-------------|----------|
//! | `restart_pod` | Pod | `{"grace_period_seconds": u32?}` (optional, may be omitted) |
//! | `scale_deployment` | Deployment | `{"replicas": 0..=2147483647}` (required) |
//! | `rollback_deployment` | Deployment | `{"to_revision": 1..?}` (optional; absent = previous revision) |
//!
//! `namespace` must be a DNS-1123 label and `name` a DNS-1123 subdomain, as Kubernetes
//! requires; unknown fields are refused everywhere. `idempotency_key` (1–128 characters of
//! `[A-Za-z0-9._:-]`) lets a client retry the same logical action with a fresh envelope
//! without it being executed twice (see [`crate::admission`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kind of action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionType {
    /// Delete a pod so that its controller recreates it.
    RestartPod,
    /// Set a deployment's replica count.
    ScaleDeployment,
    /// Roll a deployment back to an earlier revision.
    RollbackDeployment,
}

impl ActionType {
    /// Every action type.
    pub const ALL: [ActionType; 3] = [
        ActionType::RestartPod,
        ActionType::ScaleDeployment,
        ActionType::RollbackDeployment,
    ];

    /// The wire name (`restart_pod`, ...).
    pub const fn as_str(&self) -> &'static str {
        match self {
            ActionType::RestartPod => "restart_pod",
            ActionType::ScaleDeployment => "scale_deployment",
            ActionType::RollbackDeployment => "rollback_deployment",
        }
    }
}

impl fmt::Display for ActionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parameters of `restart_pod`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPodParams {
    /// Grace period for the pod's deletion; the pod's own setting when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<u32>,
}

/// Parameters of `scale_deployment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleDeploymentParams {
    /// The new replica count (Kubernetes `int32`, so at most 2147483647).
    pub replicas: u32,
}

/// Parameters of `rollback_deployment`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackDeploymentParams {
    /// The revision to return to; the previous one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<u64>,
}

/// The type-specific part of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActionParams {
    /// `restart_pod`.
    RestartPod(RestartPodParams),
    /// `scale_deployment`.
    ScaleDeployment(ScaleDeploymentParams),
    /// `rollback_deployment`.
    RollbackDeployment(RollbackDeploymentParams),
}

impl ActionParams {
    /// The action type these parameters belong to.
    pub const fn action_type(&self) -> ActionType {
        match self {
            ActionParams::RestartPod(_) => ActionType::RestartPod,
            ActionParams::ScaleDeployment(_) => ActionType::ScaleDeployment,
            ActionParams::RollbackDeployment(_) => ActionType::RollbackDeployment,
        }
    }
}

/// An invalid action field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("action field `{field}`: {reason}")]
#[non_exhaustive]
pub struct ActionError {
    /// The field (`namespace`, `params.replicas`, ...).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl ActionError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ActionError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A validated remediation action: target object, type-specific parameters and optional
/// idempotency key and requester. (De)serialises as the JSON shown in the
/// [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireAction", into = "WireAction")]
pub struct ActionRequest {
    namespace: String,
    name: String,
    params: ActionParams,
    idempotency_key: Option<String>,
    requested_by: Option<String>,
}

impl ActionRequest {
    /// A request to apply `params` to the object `namespace/name`.
    ///
    /// # Errors
    /// [`ActionError`] naming the invalid field.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        params: ActionParams,
    ) -> Result<Self, ActionError> {
        let request = ActionRequest {
            namespace: namespace.into(),
            name: name.into(),
            params,
            idempotency_key: None,
            requested_by: None,
        };
        request.validate()?;
        Ok(request)
    }

    /// Sets the idempotency key.
    ///
    /// # Errors
    /// [`ActionError`] for a key outside 1–128 characters of `[A-Za-z0-9._:-]`.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Result<Self, ActionError> {
        self.idempotency_key = Some(key.into());
        self.validate()?;
        Ok(self)
    }

    /// Sets who asked for the action (informational, for audit).
    ///
    /// # Errors
    /// [`ActionError`] for an empty or over-long value or control characters.
    pub fn with_requested_by(mut self, who: impl Into<String>) -> Result<Self, ActionError> {
        self.requested_by = Some(who.into());
        self.validate()?;
        Ok(self)
    }

    /// The action type.
    pub fn action_type(&self) -> ActionType {
        self.params.action_type()
    }

    /// The target's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The type-specific parameters.
    pub fn params(&self) -> &ActionParams {
        &self.params
    }

    /// The idempotency key.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// Who asked for the action.
    pub fn requested_by(&self) -> Option<&str> {
        self.requested_by.as_deref()
    }

    fn validate(&self) -> Result<(), ActionError> {
        check_dns1123_label(&self.namespace).map_err(|r| ActionError::new("namespace", r))?;
        check_dns1123_subdomain(&self.name).map_err(|r| ActionError::new("name", r))?;
        match &self.params {
            ActionParams::ScaleDeployment(p) if p.replicas > i32::MAX as u32 => {
                return Err(ActionError::new(
                    "params.replicas",
                    "must be at most 2147483647 (Kubernetes int32)",
                ));
            }
            ActionParams::RollbackDeployment(p) if p.to_revision == Some(0) => {
                return Err(ActionError::new(
                    "params.to_revision",
                    "revisions start at 1; omit the field for the previous revision",
                ));
            }
            ActionParams::RollbackDeployment(p)
                if p.to_revision
                    .is_some_and(|r| r > crate::jcs::MAX_SAFE_INTEGER) =>
            {
                return Err(ActionError::new(
                    "params.to_revision",
                    "must be at most 2^53 - 1",
                ));
            }
            _ => {}
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty()
                || key.len() > 128
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')))
        {
            return Err(ActionError::new(
                "idempotency_key",
                "must be 1 to 128 characters of A-Z a-z 0-9 . _ : -",
            ));
        }
        if let Some(who) = &self.requested_by
            && (who.is_empty() || who.len() > 256 || who.chars().any(char::is_control))
        {
            return Err(ActionError::new(
                "requested_by",
                "must be 1 to 256 bytes without control characters",
            ));
        }
        Ok(())
    }
}

/// RFC 1123 label as Kubernetes checks namespaces: 1–63 of `[a-z0-9-]`, alphanumeric at
/// both ends.
fn check_dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err(format!("{s:?} must be 1 to 63 characters"));
    }
    let ok_end = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || !ok_end(s.as_bytes().first())
        || !ok_end(s.as_bytes().last())
    {
        return Err(format!(
            "{s:?} is not a DNS-1123 label (lower-case alphanumerics and '-', alphanumeric at both ends)"
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain as Kubernetes checks object names: at most 253 characters, dot-
/// separated labels.
fn check_dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("{s:?} must be 1 to 253 characters"));
    }
    for label in s.split('.') {
        check_dns1123_label(label).map_err(|_| format!("{s:?} is not a DNS-1123 subdomain"))?;
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireAction {
    #[serde(rename = "type")]
    kind: ActionType,
    namespace: String,
    name: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    params: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_by: Option<String>,
}

impl TryFrom<WireAction> for ActionRequest {
    type Error = ActionError;

    fn try_from(w: WireAction) -> Result<Self, ActionError> {
        fn params<T: serde::de::DeserializeOwned + Default>(v: Value) -> Result<T, ActionError> {
            if v.is_null() {
                return Ok(T::default());
            }
            serde_json::from_value(v).map_err(|e| ActionError::new("params", e.to_string()))
        }
        let params = match w.kind {
            ActionType::RestartPod => ActionParams::RestartPod(params(w.params)?),
            ActionType::RollbackDeployment => ActionParams::RollbackDeployment(params(w.params)?),
            ActionType::ScaleDeployment if w.params.is_null() => {
                return Err(ActionError::new(
                    "params.replicas",
                    "is required for scale_deployment",
                ));
            }
            ActionType::ScaleDeployment => ActionParams::ScaleDeployment(
                serde_json::from_value(w.params)
                    .map_err(|e| ActionError::new("params", e.to_string()))?,
            ),
        };
        let request = ActionRequest {
            namespace: w.namespace,
            name: w.name,
            params,
            idempotency_key: w.idempotency_key,
            requested_by: w.requested_by,
        };
        request.validate()?;
        Ok(request)
    }
}

impl From<ActionRequest> for WireAction {
    fn from(r: ActionRequest) -> Self {
        let kind = r.action_type();
        let params = match r.params {
            ActionParams::RestartPod(p) if p == RestartPodParams::default() => Value::Null,
            ActionParams::RollbackDeployment(p) if p == RollbackDeploymentParams::default() => {
                Value::Null
            }
            ActionParams::RestartPod(p) => serde_json::to_value(p).unwrap_or(Value::Null),
            ActionParams::ScaleDeployment(p) => serde_json::to_value(p).unwrap_or(Value::Null),
            ActionParams::RollbackDeployment(p) => serde_json::to_value(p).unwrap_or(Value::Null),
        };
        WireAction {
            kind,
            namespace: r.namespace,
            name: r.name,
            params,
            idempotency_key: r.idempotency_key,
            requested_by: r.requested_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ActionRequest, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn the_three_action_types_round_trip() {
        for v in [
            json!({"type": "restart_pod", "namespace": "shop", "name": "web-7d9f-abcde"}),
            json!({"type": "restart_pod", "namespace": "shop", "name": "web-0",
                   "params": {"grace_period_seconds": 10}}),
            json!({"type": "scale_deployment", "namespace": "shop", "name": "web",
                   "params": {"replicas": 3}, "idempotency_key": "abc-1",
                   "requested_by": "engine"}),
            json!({"type": "rollback_deployment", "namespace": "kube-system", "name": "coredns"}),
            json!({"type": "rollback_deployment", "namespace": "a", "name": "b.c",
                   "params": {"to_revision": 4}}),
        ] {
            let req = parse(v.clone()).unwrap();
            assert_eq!(serde_json::to_value(&req).unwrap(), v);
        }
        let req = parse(
            json!({"type": "scale_deployment", "namespace": "shop", "name": "web",
                               "params": {"replicas": 3}}),
        )
        .unwrap();
        assert_eq!(req.action_type(), ActionType::ScaleDeployment);
        assert_eq!(
            req.params(),
            &ActionParams::ScaleDeployment(ScaleDeploymentParams { replicas: 3 })
        );
    }

    #[test]
    fn invalid_actions_name_the_field() {
        let cases = [
            (
                json!({"type": "delete_cluster", "namespace": "a", "name": "b"}),
                "unknown variant",
            ),
            (
                json!({"type": "restart_pod", "namespace": "Prod", "name": "b"}),
                "namespace",
            ),
            (
                json!({"type": "restart_pod", "namespace": "a", "name": "-b"}),
                "name",
            ),
            (
                json!({"type": "restart_pod", "namespace": "a", "name": "b", "x": 1}),
                "unknown field",
            ),
            (
                json!({"type": "scale_deployment", "namespace": "a", "name": "b"}),
                "replicas",
            ),
            (
                json!({"type": "scale_deployment", "namespace": "a", "name": "b",
                    "params": {"replicas": -1}}),
                "params",
            ),
            (
                json!({"type": "scale_deployment", "namespace": "a", "name": "b",
                    "params": {"replicas": 3_000_000_000_u64}}),
                "params.replicas",
            ),
            (
                json!({"type": "scale_deployment", "namespace": "a", "name": "b",
                    "params": {"replicas": 1, "force": true}}),
                "unknown field",
            ),
            (
                json!({"type": "rollback_deployment", "namespace": "a", "name": "b",
                    "params": {"to_revision": 0}}),
                "params.to_revision",
            ),
            (
                json!({"type": "restart_pod", "namespace": "a", "name": "b",
                    "idempotency_key": "has space"}),
                "idempotency_key",
            ),
            (
                json!({"type": "restart_pod", "namespace": "a", "name": "b",
                    "requested_by": "x\ny"}),
                "requested_by",
            ),
            (json!({"namespace": "a", "name": "b"}), "type"),
        ];
        for (v, needle) in cases {
            let err = parse(v.clone()).unwrap_err();
            assert!(err.contains(needle), "{v}: {err}");
        }
    }

    #[test]
    fn builders_validate() {
        let req = ActionRequest::new(
            "shop",
            "web",
            ActionParams::ScaleDeployment(ScaleDeploymentParams { replicas: 2 }),
        )
        .unwrap()
        .with_idempotency_key("k-1")
        .unwrap();
        assert_eq!(req.idempotency_key(), Some("k-1"));
        assert!(req.clone().with_idempotency_key("").is_err());
        assert!(
            ActionRequest::new("a_b", "web", ActionParams::RestartPod(Default::default())).is_err()
        );
        assert!(
            ActionRequest::new(
                "a",
                "x".repeat(254),
                ActionParams::RestartPod(Default::default())
            )
            .is_err()
        );
    }
}
