//! The Kubernetes API requests of each action, computed from the objects read from the
//! cluster. Both executors run [`plan`]: the dry-run executor prints its requests, the kube
//! executor sends exactly these requests (same method, path, content type and body).
//!
//! | action | reads | write |
//! |--------|-------|-------|
//! | `restart_pod` | `GET` the pod | `DELETE` the pod (`DeleteOptions`: background propagation, `preconditions.uid`, the grace period if given, 0 sent as 1) |
//! | `scale_deployment` | — | `PATCH …/deployments/NAME/scale`, merge patch `{"spec":{"replicas":N}}` (what `kubectl scale` sends) |
//! | `rollback_deployment` | `GET` the deployment, `LIST` its ReplicaSets by its selector | `PATCH` the deployment, JSON patch replacing `spec.template` and `metadata.annotations` (what `kubectl rollout undo` sends) |
//!
//! Objects are handled as raw JSON, never through typed structs: a field this build does not
//! know (a newer API server) is carried through a rollback instead of being dropped.
//!
//! Differences from kubectl, each deliberate:
//! * `restart_pod` refuses a pod without a controller (deleting it removes it for good)
//!   unless allowed, refuses a static pod's mirror pod always (deleting a mirror pod does
//!   not restart the static pod: the kubelet just recreates the mirror), and deletes with
//!   `preconditions.uid` so that exactly the inspected pod is deleted; a grace period of 0
//!   is sent as 1, as kubectl does without `--force` (0 is a force deletion);
//! * the rollback patch starts with a JSON-patch `test` of `metadata.resourceVersion`: if the
//!   deployment changed between the read and the patch, the API server refuses the patch
//!   instead of rolling back relative to a stale state;
//! * when the deployment has no annotations at all, the annotations are `add`ed (kubectl's
//!   `replace` would fail on the missing member);
//! * a rollback to the previous revision is refused while `status.observedGeneration` is
//!   behind `metadata.generation`: until the controller has created the ReplicaSet of the
//!   current template, kubectl's "previous" is two revisions back;
//! * the "skipped rollback" message names the revision found (kubectl prints the requested
//!   revision, `0` for "the previous one").

use std::cmp::Ordering;
use std::fmt::Write as _;

use kubesafe_signing::action::{
    ActionParams, ActionRequest, RestartPodParams, RollbackDeploymentParams,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::Digest as _;

/// Annotation holding a ReplicaSet's (and its deployment's) rollout revision.
pub(crate) const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Label the deployment controller adds to each ReplicaSet's pod template.
pub(crate) const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Annotation the kubelet puts on the mirror pod of a static pod.
pub(crate) const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Annotations kept from the deployment, never copied from the ReplicaSet, when rolling back
/// (kubectl's `annotationsToSkip`).
const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// Content type of a JSON merge patch (RFC 7386).
pub(crate) const MERGE_PATCH: &str = "application/merge-patch+json";
/// Content type of a JSON patch (RFC 6902).
pub(crate) const JSON_PATCH: &str = "application/json-patch+json";
/// Content type of a JSON request body.
pub(crate) const JSON: &str = "application/json";

/// One Kubernetes API request: what the dry run prints and what `--apply` sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiRequest {
    /// HTTP method.
    pub(crate) method: &'static str,
    /// Path and query, relative to the API server's URL.
    pub(crate) path: String,
    /// `Content-Type` of the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content_type: Option<&'static str>,
    /// The JSON body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<Value>,
}

impl ApiRequest {
    fn get(path: String) -> Self {
        ApiRequest {
            method: "GET",
            path,
            content_type: None,
            body: None,
        }
    }

    /// The `http::Request` kube's client sends (the client adds the server URL and auth).
    pub(crate) fn to_http(&self) -> Result<http::Request<Vec<u8>>, ExecError> {
        let body = match &self.body {
            Some(v) => serde_json::to_vec(v).map_err(|e| ExecError::failed(e.to_string()))?,
            None => Vec::new(),
        };
        let mut builder = http::Request::builder()
            .method(self.method)
            .uri(self.path.as_str())
            .header(http::header::ACCEPT, JSON);
        if let Some(ct) = self.content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        builder
            .body(body)
            .map_err(|e| ExecError::failed(format!("{} {}: {e}", self.method, self.path)))
    }

    /// The request as the audit log keeps it: a JSON-patch body (a rollback: the pod
    /// template, whose env values may be literal secrets, and the annotations, whose
    /// last-applied-configuration holds the whole object) is replaced by the SHA-256 of the
    /// exact bytes sent (`bodySha256`); other bodies (scale, `DeleteOptions`) are kept.
    pub(crate) fn for_audit(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if self.content_type == Some(JSON_PATCH)
            && let (Some(body), Value::Object(o)) = (&self.body, &mut v)
        {
            o.remove("body");
            let bytes = serde_json::to_vec(body).unwrap_or_default();
            let digest = sha2::Sha256::digest(&bytes);
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            o.insert("bodySha256".into(), hex.into());
        }
        v
    }

    /// One line: `PATCH /apis/...`.
    pub(crate) fn summary(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Why an action was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExecError {
    /// The executor refuses: the action would break an invariant (a bare or mirror pod).
    /// Reported as `INVARIANT_VIOLATION`, audited as `rejected`.
    Refused {
        /// Why.
        message: String,
    },
    /// The action could not be carried out (object missing, paused deployment, a read or
    /// write the API server refused, no connection). Nothing was applied. Audited as
    /// `failed`.
    Failed {
        /// Why.
        message: String,
    },
    /// A write was sent and its outcome is not known: the connection broke after the
    /// request went out, or the API server answered 5xx (a 504 "request did not complete
    /// within the allotted timeout" may still be committed). Audited as `failed` with
    /// `result.outcome = "unknown"`; the idempotency key stays reserved.
    Unknown {
        /// Why.
        message: String,
    },
}

impl ExecError {
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        ExecError::Failed {
            message: message.into(),
        }
    }

    fn refused(message: impl Into<String>) -> Self {
        ExecError::Refused {
            message: message.into(),
        }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            ExecError::Refused { message }
            | ExecError::Failed { message }
            | ExecError::Unknown { message } => message,
        }
    }
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// A read the planner needs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read<'a> {
    /// `GET /api/v1/namespaces/NS/pods/NAME`.
    Pod { namespace: &'a str, name: &'a str },
    /// `GET /apis/apps/v1/namespaces/NS/deployments/NAME`.
    Deployment { namespace: &'a str, name: &'a str },
    /// `GET /apis/apps/v1/namespaces/NS/replicasets?labelSelector=…`.
    ReplicaSets {
        namespace: &'a str,
        selector: &'a Value,
    },
}

impl Read<'_> {
    /// The request that performs this read.
    pub(crate) fn request(&self) -> Result<ApiRequest, ExecError> {
        Ok(ApiRequest::get(match self {
            Read::Pod { namespace, name } => pod_path(namespace, name),
            Read::Deployment { namespace, name } => deployment_path(namespace, name),
            Read::ReplicaSets {
                namespace,
                selector,
            } => {
                let selector = label_selector_string(selector)?;
                let mut path = format!("/apis/apps/v1/namespaces/{namespace}/replicasets");
                if !selector.is_empty() {
                    path.push_str("?labelSelector=");
                    path.push_str(&percent_encode(&selector));
                }
                path
            }
        }))
    }
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReadResult {
    /// The object (or, for a list, the `List` object with `items`).
    Found(Value),
    /// 404.
    NotFound,
    /// Not known: a dry run without cluster state.
    Unknown,
}

/// Where the planner's reads go: the live cluster or a snapshot.
pub(crate) trait ClusterRead {
    /// Performs `read`.
    async fn read(&self, read: Read<'_>) -> Result<ReadResult, ExecError>;
}

/// Executor options that are not part of the signed action.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlanOptions {
    /// Delete pods without a controller too.
    pub(crate) allow_bare_pod: bool,
}

/// The requests of one action.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Plan {
    /// Reads made (or, in a dry run without cluster state, that `--apply` would make).
    pub(crate) reads: Vec<ApiRequest>,
    /// Writes to send, in order.
    pub(crate) writes: Vec<ApiRequest>,
    /// Set when nothing needs to be written (rollback to the current template).
    pub(crate) skipped: Option<String>,
    /// Remarks (what a dry run without cluster state could not compute).
    pub(crate) notes: Vec<String>,
    /// The revision a rollback restores.
    pub(crate) target: Option<RollbackTarget>,
}

/// Computes the requests for `request`, reading what it needs through `reader`.
pub(crate) async fn plan<R: ClusterRead>(
    reader: &R,
    request: &ActionRequest,
    options: PlanOptions,
) -> Result<Plan, ExecError> {
    let (namespace, name) = (request.namespace(), request.name());
    let mut plan = Plan::default();
    match request.params() {
        ActionParams::ScaleDeployment(p) => {
            plan.writes.push(scale_request(namespace, name, p.replicas));
        }
        ActionParams::RestartPod(p) => {
            let read = Read::Pod { namespace, name };
            plan.reads.push(read.request()?);
            match reader.read(read).await? {
                ReadResult::Found(pod) => {
                    plan.writes
                        .push(restart_request(&pod, namespace, name, p, options)?);
                }
                ReadResult::NotFound => {
                    return Err(ExecError::failed(format!(
                        "pod {namespace}/{name} not found"
                    )));
                }
                ReadResult::Unknown => {
                    plan.writes
                        .push(delete_pod_request(namespace, name, p, None));
                    plan.notes.push(format!(
                        "no cluster state given: the controller check of pod {namespace}/{name} \
                         and the preconditions.uid of the DELETE are taken from the live pod \
                         with --apply"
                    ));
                }
            }
        }
        ActionParams::RollbackDeployment(p) => {
            let read = Read::Deployment { namespace, name };
            plan.reads.push(read.request()?);
            let deployment = match reader.read(read).await? {
                ReadResult::Found(d) => d,
                ReadResult::NotFound => {
                    return Err(ExecError::failed(format!(
                        "deployment {namespace}/{name} not found"
                    )));
                }
                ReadResult::Unknown => {
                    plan.notes.push(format!(
                        "no cluster state given: the ReplicaSets of deployment \
                         {namespace}/{name} and the rollback patch are computed from the live \
                         objects with --apply"
                    ));
                    return Ok(plan);
                }
            };
            let selector = deployment
                .pointer("/spec/selector")
                .ok_or_else(|| {
                    ExecError::failed(format!(
                        "deployment {namespace}/{name}: spec.selector is missing"
                    ))
                })?
                .clone();
            let read = Read::ReplicaSets {
                namespace,
                selector: &selector,
            };
            plan.reads.push(read.request()?);
            let list = match reader.read(read).await? {
                ReadResult::Found(list) => list,
                ReadResult::NotFound | ReadResult::Unknown => json!({"items": []}),
            };
            let items = list
                .get("items")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            match rollback_request(namespace, name, &deployment, items, p)? {
                Rollback::Patch(req, target) => {
                    plan.writes.push(req);
                    plan.target = Some(target);
                }
                Rollback::Skipped(message) => plan.skipped = Some(message),
            }
        }
        other => {
            return Err(ExecError::failed(format!(
                "action type {} is not supported by this executor",
                other.action_type()
            )));
        }
    }
    Ok(plan)
}

fn pod_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{name}")
}

fn deployment_path(namespace: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
}

/// `kubectl scale deployment NAME --replicas=N`: a merge patch of the `scale` subresource.
pub(crate) fn scale_request(namespace: &str, name: &str, replicas: u32) -> ApiRequest {
    ApiRequest {
        method: "PATCH",
        path: format!("{}/scale", deployment_path(namespace, name)),
        content_type: Some(MERGE_PATCH),
        body: Some(json!({"spec": {"replicas": replicas}})),
    }
}

fn delete_pod_request(
    namespace: &str,
    name: &str,
    params: &RestartPodParams,
    uid: Option<&str>,
) -> ApiRequest {
    let mut options = Map::new();
    options.insert("apiVersion".into(), "v1".into());
    options.insert("kind".into(), "DeleteOptions".into());
    // kubectl's default cascade (`--cascade=background`).
    options.insert("propagationPolicy".into(), "Background".into());
    if let Some(grace) = params.grace_period_seconds {
        // 0 would be a force deletion: the API server removes the pod object at once,
        // before its containers stop, and a StatefulSet starts the replacement while the
        // old pod may still run. kubectl turns `--grace-period=0` into 1 unless `--force`
        // ("to prevent accidental data loss"); so do we, and there is no force.
        options.insert("gracePeriodSeconds".into(), grace.max(1).into());
    }
    if let Some(uid) = uid {
        options.insert("preconditions".into(), json!({ "uid": uid }));
    }
    ApiRequest {
        method: "DELETE",
        path: pod_path(namespace, name),
        content_type: Some(JSON),
        body: Some(Value::Object(options)),
    }
}

/// The DELETE of a pod that its controller will recreate; refuses pods that would not come
/// back (no controller, unless allowed) or whose deletion restarts nothing (mirror pods).
pub(crate) fn restart_request(
    pod: &Value,
    namespace: &str,
    name: &str,
    params: &RestartPodParams,
    options: PlanOptions,
) -> Result<ApiRequest, ExecError> {
    let meta = pod.get("metadata").unwrap_or(&Value::Null);
    if meta
        .get("annotations")
        .and_then(|a| a.get(MIRROR_POD_ANNOTATION))
        .is_some()
    {
        return Err(ExecError::refused(format!(
            "pod {namespace}/{name} is the mirror pod of a static pod (annotation \
             {MIRROR_POD_ANNOTATION}): deleting it does not restart the static pod, the \
             kubelet only recreates the mirror; change the manifest on the node instead"
        )));
    }
    let controller = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        });
    if controller.is_none() && !options.allow_bare_pod {
        return Err(ExecError::refused(format!(
            "pod {namespace}/{name} has no controller (no ownerReference with controller: \
             true): deleting it removes it for good instead of restarting it; pass \
             --allow-bare-pod to delete it anyway"
        )));
    }
    let uid = meta.get("uid").and_then(Value::as_str);
    Ok(delete_pod_request(namespace, name, params, uid))
}

/// The revision a rollback returns to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RollbackTarget {
    /// Its `deployment.kubernetes.io/revision`.
    pub(crate) revision: i64,
    /// The ReplicaSet whose template is restored.
    pub(crate) replica_set: String,
}

/// What a rollback needs to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rollback {
    /// Send this patch, restoring `target`.
    Patch(ApiRequest, RollbackTarget),
    /// Nothing to do; kubectl's "skipped rollback" message.
    Skipped(String),
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// kubectl's `deploymentutil.Revision`: a missing annotation is revision 0; an unparsable
/// one is `None` (the ReplicaSet is ignored).
fn revision(rs: &Value) -> Option<i64> {
    match rs
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION_ANNOTATION))
    {
        None => Some(0),
        Some(v) => v.as_str().and_then(|s| s.parse::<i64>().ok()),
    }
}

/// `metav1.IsControlledBy`: a controller owner reference with the deployment's uid.
fn controlled_by(rs: &Value, uid: &str) -> bool {
    rs.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r.get("controller").and_then(Value::as_bool) == Some(true)
                    && r.get("uid").and_then(Value::as_str) == Some(uid)
            })
        })
}

/// The template without the `pod-template-hash` label (and without an emptied `labels`).
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
        let now_empty = match meta.get_mut("labels").and_then(Value::as_object_mut) {
            Some(labels) => {
                labels.remove(POD_TEMPLATE_HASH_LABEL);
                labels.is_empty()
            }
            None => false,
        };
        if now_empty {
            meta.remove("labels");
        }
    }
    t
}

/// kubectl's `equalIgnoreHash`.
fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    without_hash(a) == without_hash(b)
}

/// kubectl's ReplicaSet order: creation time, then name (RFC 3339 UTC strings of the same
/// shape compare as text).
fn by_creation(a: &&Value, b: &&Value) -> Ordering {
    let key = |v: &Value| {
        (
            str_at(v, "/metadata/creationTimestamp")
                .unwrap_or_default()
                .to_owned(),
            str_at(v, "/metadata/name").unwrap_or_default().to_owned(),
        )
    };
    key(a).cmp(&key(b))
}

/// `kubectl rollout undo deployment/NAME [--to-revision=N]`, as a patch of `deployment`
/// given the ReplicaSets listed by its selector.
pub(crate) fn rollback_request(
    namespace: &str,
    name: &str,
    deployment: &Value,
    replica_sets: &[Value],
    params: &RollbackDeploymentParams,
) -> Result<Rollback, ExecError> {
    // The PATCH goes to the admitted target's path; the object read must be that target.
    let (object_ns, object_name) = (
        str_at(deployment, "/metadata/namespace"),
        str_at(deployment, "/metadata/name"),
    );
    if object_ns != Some(namespace) || object_name != Some(name) {
        return Err(ExecError::failed(format!(
            "the object read for deployment {namespace}/{name} is deployment {}/{}; \
             refusing to roll back",
            object_ns.unwrap_or("?"),
            object_name.unwrap_or("?")
        )));
    }
    let uid = str_at(deployment, "/metadata/uid").ok_or_else(|| {
        ExecError::failed(format!(
            "deployment {namespace}/{name}: metadata.uid is missing (needed to find the \
             ReplicaSets it controls)"
        ))
    })?;
    let template = deployment.pointer("/spec/template").ok_or_else(|| {
        ExecError::failed(format!(
            "deployment {namespace}/{name}: spec.template is missing"
        ))
    })?;

    // deploymentutil.GetAllReplicaSets: the ReplicaSets this deployment controls, sorted by
    // creation; the oldest one matching the current template is the "new" one and goes
    // last (old ones first, then the new one, as kubectl iterates them).
    let mut owned: Vec<&Value> = replica_sets
        .iter()
        .filter(|rs| controlled_by(rs, uid))
        .collect();
    owned.sort_by(by_creation);
    if let Some(i) = owned.iter().position(|rs| {
        rs.pointer("/spec/template")
            .is_some_and(|t| equal_ignore_hash(t, template))
    }) {
        let new_rs = owned.remove(i);
        owned.push(new_rs);
    }

    // deploymentRevision.
    let to_revision = match params.to_revision {
        None => 0,
        Some(r) => i64::try_from(r).map_err(|_| {
            ExecError::failed(format!("unable to find specified revision {r} in history"))
        })?,
    };
    if to_revision == 0
        && let (Some(generation), Some(observed)) = (
            deployment
                .pointer("/metadata/generation")
                .and_then(Value::as_i64),
            deployment
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64),
        )
        && observed < generation
    {
        // The spec changed and the controller has not caught up: the ReplicaSet of the
        // current template may not exist yet, so the newest ReplicaSet is still the one
        // running and "the previous revision" would go back two steps.
        return Err(ExecError::failed(format!(
            "deployment {namespace}/{name} is being updated (generation {generation}, \
             observedGeneration {observed}): the previous revision is not known until the \
             deployment controller has observed the change; retry, or give to_revision"
        )));
    }
    let mut found: Option<(&Value, i64)> = None;
    if to_revision > 0 {
        found = owned
            .iter()
            .find_map(|rs| (revision(rs) == Some(to_revision)).then_some((*rs, to_revision)));
        if found.is_none() {
            return Err(ExecError::failed(format!(
                "unable to find specified revision {to_revision} in history"
            )));
        }
    } else {
        // kubectl starts both at revision -1 (a ReplicaSet below that is never chosen).
        let (mut latest, mut latest_revision, mut previous_revision) = (None, -1, -1);
        for rs in &owned {
            let Some(v) = revision(rs) else { continue };
            if latest_revision < v {
                (found, previous_revision) =
                    (latest.map(|l| (l, latest_revision)), latest_revision);
                (latest, latest_revision) = (Some(*rs), v);
            } else if previous_revision < v {
                (found, previous_revision) = (Some((*rs, v)), v);
            }
        }
    }
    let Some((rs, rs_revision)) = found else {
        return Err(ExecError::failed(format!(
            "no rollout history found for deployment {name:?}"
        )));
    };

    if deployment.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return Err(ExecError::failed(format!(
            "you cannot rollback a paused deployment; resume it first with 'kubectl rollout \
             resume deployment/{name}' and try again"
        )));
    }
    let rs_name = str_at(rs, "/metadata/name").unwrap_or_default();
    let rs_template = rs.pointer("/spec/template").ok_or_else(|| {
        ExecError::failed(format!(
            "replicaset {namespace}/{rs_name}: spec.template is missing"
        ))
    })?;
    if equal_ignore_hash(rs_template, template) {
        return Ok(Rollback::Skipped(format!(
            "skipped rollback (current template already matches revision {rs_revision})"
        )));
    }

    // Annotations: the deployment's own for the skipped keys, the ReplicaSet's for the rest.
    let mut annotations = Map::new();
    let deployment_annotations = deployment
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    for key in ANNOTATIONS_TO_SKIP {
        if let Some(v) = deployment_annotations.and_then(|a| a.get(key)) {
            annotations.insert(key.to_owned(), v.clone());
        }
    }
    if let Some(rs_annotations) = rs
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in rs_annotations {
            if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }

    let mut ops = Vec::with_capacity(3);
    if let Some(rv) = str_at(deployment, "/metadata/resourceVersion") {
        ops.push(json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
    }
    ops.push(
        json!({"op": "replace", "path": "/spec/template", "value": without_hash(rs_template)}),
    );
    let annotations_op = if deployment_annotations.is_some() {
        "replace"
    } else {
        "add"
    };
    ops.push(json!({"op": annotations_op, "path": "/metadata/annotations", "value": annotations}));
    Ok(Rollback::Patch(
        ApiRequest {
            method: "PATCH",
            path: deployment_path(namespace, name),
            content_type: Some(JSON_PATCH),
            body: Some(Value::Array(ops)),
        },
        RollbackTarget {
            revision: rs_revision,
            replica_set: rs_name.to_owned(),
        },
    ))
}

/// `metav1.LabelSelectorAsSelector(...).String()`: `k=v` for `matchLabels`, `k in (a,b)`,
/// `k notin (a,b)`, `k`, `!k` for `matchExpressions`, sorted by key, comma-separated.
pub(crate) fn label_selector_string(selector: &Value) -> Result<String, ExecError> {
    let bad = |what: &str| ExecError::failed(format!("invalid spec.selector: {what}"));
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels") {
        let labels = labels
            .as_object()
            .ok_or_else(|| bad("matchLabels is not an object"))?;
        for (k, v) in labels {
            let v = v
                .as_str()
                .ok_or_else(|| bad("a matchLabels value is not a string"))?;
            requirements.push((k.clone(), format!("{k}={v}")));
        }
    }
    if let Some(exprs) = selector.get("matchExpressions") {
        let exprs = exprs
            .as_array()
            .ok_or_else(|| bad("matchExpressions is not a list"))?;
        for e in exprs {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a matchExpressions entry has no key"))?;
            let mut values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            values.sort_unstable();
            let text = match e.get("operator").and_then(Value::as_str) {
                Some("In") => format!("{key} in ({})", values.join(",")),
                Some("NotIn") => format!("{key} notin ({})", values.join(",")),
                Some("Exists") => key.to_owned(),
                Some("DoesNotExist") => format!("!{key}"),
                other => {
                    return Err(bad(&format!(
                        "operator {other:?} of key {key:?} is not In, NotIn, Exists or DoesNotExist"
                    )));
                }
            };
            requirements.push((key.to_owned(), text));
        }
    }
    requirements.sort();
    Ok(requirements
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(","))
}

/// Whether `labels` (an object or absent) satisfy `selector` (for cluster-state snapshots).
pub(crate) fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let match_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let match_exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| vs.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match e.get("operator").and_then(Value::as_str) {
                    Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                    Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                    Some("Exists") => label(key).is_some(),
                    Some("DoesNotExist") => label(key).is_none(),
                    _ => false,
                }
            })
        });
    match_labels && match_exprs
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rollback_request` for the target `shop/web`.
    fn rb(
        deployment: &Value,
        replica_sets: &[Value],
        params: &RollbackDeploymentParams,
    ) -> Result<Rollback, ExecError> {
        rollback_request("shop", "web", deployment, replica_sets, params)
    }

    #[test]
    fn rollback_patches_the_admitted_target_only() {
        // The PATCH path is the admitted action's namespace/name, never the object's; an
        // object that is not the target (a snapshot or a server answering for another
        // object) is refused instead of being patched under its own name.
        let mut d = deployment("web:3", Some(json!({REVISION_ANNOTATION: "3"})));
        d["metadata"]["namespace"] = "kube-system".into();
        let err = rb(&d, &history(), &Default::default()).unwrap_err();
        assert!(
            matches!(&err, ExecError::Failed { message } if message.contains("kube-system/web")),
            "{err:?}"
        );
        let mut d = deployment("web:3", Some(json!({REVISION_ANNOTATION: "3"})));
        d["metadata"]["name"] = "other".into();
        assert!(rb(&d, &history(), &Default::default()).is_err());
        let mut d = deployment("web:3", Some(json!({REVISION_ANNOTATION: "3"})));
        d["metadata"].as_object_mut().unwrap().remove("namespace");
        assert!(rb(&d, &history(), &Default::default()).is_err());
    }

    const UID: &str = "5d7c3e0a-0000-4000-8000-000000000001";

    fn template(image: &str, hash: Option<&str>) -> Value {
        let mut labels = json!({"app": "web"});
        if let Some(h) = hash {
            labels[POD_TEMPLATE_HASH_LABEL] = h.into();
        }
        json!({
            "metadata": {"creationTimestamp": null, "labels": labels},
            "spec": {
                "containers": [{"name": "web", "image": image, "resources": {}}],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30
            }
        })
    }

    fn deployment(image: &str, annotations: Option<Value>) -> Value {
        let mut d = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "shop", "uid": UID, "resourceVersion": "4711"
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": template(image, None)
            }
        });
        if let Some(a) = annotations {
            d["metadata"]["annotations"] = a;
        }
        d
    }

    fn replica_set(name: &str, revision: Option<&str>, image: &str, created: &str) -> Value {
        let mut annotations = json!({
            "deployment.kubernetes.io/desired-replicas": "3",
            "deployment.kubernetes.io/max-replicas": "4",
            "kubernetes.io/change-cause": format!("image {image}"),
        });
        if let Some(r) = revision {
            annotations[REVISION_ANNOTATION] = r.into();
        }
        let hash = name.rsplit('-').next().unwrap();
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name, "namespace": "shop", "creationTimestamp": created,
                "annotations": annotations,
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                    "uid": UID, "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web", POD_TEMPLATE_HASH_LABEL: hash}},
                "template": template(image, Some(hash))
            }
        })
    }

    fn history() -> Vec<Value> {
        vec![
            replica_set("web-7c9f", Some("1"), "web:1", "2024-05-01T10:00:00Z"),
            replica_set("web-5b6d", Some("3"), "web:3", "2024-05-03T10:00:00Z"),
            replica_set("web-8a1e", Some("2"), "web:2", "2024-05-02T10:00:00Z"),
        ]
    }

    fn patch_ops(r: Rollback) -> Vec<Value> {
        match r {
            Rollback::Patch(req, _) => {
                assert_eq!(req.method, "PATCH");
                assert_eq!(req.path, "/apis/apps/v1/namespaces/shop/deployments/web");
                assert_eq!(req.content_type, Some(JSON_PATCH));
                req.body.unwrap().as_array().unwrap().clone()
            }
            Rollback::Skipped(m) => panic!("skipped: {m}"),
        }
    }

    #[test]
    fn rollback_to_previous_revision_patches_its_template_without_the_hash_label() {
        let d = deployment(
            "web:3",
            Some(json!({
                REVISION_ANNOTATION: "3",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "kubernetes.io/change-cause": "image web:3",
                "team": "shop"
            })),
        );
        let ops = patch_ops(rb(&d, &history(), &Default::default()).unwrap());
        assert_eq!(
            ops[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": "4711"})
        );
        assert_eq!(ops[1]["op"], "replace");
        assert_eq!(ops[1]["path"], "/spec/template");
        // Revision 2's template, pod-template-hash removed, everything else kept.
        assert_eq!(ops[1]["value"], template("web:2", None));
        assert_eq!(ops[2]["op"], "replace");
        assert_eq!(ops[2]["path"], "/metadata/annotations");
        // Skipped keys come from the deployment (revision 3 stays until the controller
        // bumps it; last-applied stays); the rest from the ReplicaSet (change-cause of
        // revision 2); deployment-only annotations ("team") are dropped, as kubectl does.
        assert_eq!(
            ops[2]["value"],
            json!({
                REVISION_ANNOTATION: "3",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "kubernetes.io/change-cause": "image web:2"
            })
        );
        assert_eq!(ops.len(), 3);
    }

    #[test]
    fn rollback_to_a_given_revision() {
        let d = deployment("web:3", Some(json!({REVISION_ANNOTATION: "3"})));
        let params = RollbackDeploymentParams {
            to_revision: Some(1),
        };
        let ops = patch_ops(rb(&d, &history(), &params).unwrap());
        assert_eq!(ops[1]["value"], template("web:1", None));
        let params = RollbackDeploymentParams {
            to_revision: Some(9),
        };
        assert_eq!(
            rb(&d, &history(), &params),
            Err(ExecError::failed(
                "unable to find specified revision 9 in history"
            ))
        );
    }

    #[test]
    fn rollback_skipped_when_the_template_already_matches() {
        // The deployment already runs revision 2's template (e.g. rolled back before).
        let d = deployment("web:2", Some(json!({REVISION_ANNOTATION: "4"})));
        let mut rss = history();
        // The controller relabelled revision 2 as 4 when it was rolled back to.
        rss[2] = replica_set("web-8a1e", Some("4"), "web:2", "2024-05-02T10:00:00Z");
        // Previous revision = 3 (web:3): a real rollback.
        let ops = patch_ops(rb(&d, &rss, &Default::default()).unwrap());
        assert_eq!(ops[1]["value"], template("web:3", None));
        // Explicitly to revision 4 = the current template: skipped.
        let params = RollbackDeploymentParams {
            to_revision: Some(4),
        };
        assert_eq!(
            rb(&d, &rss, &params),
            Ok(Rollback::Skipped(
                "skipped rollback (current template already matches revision 4)".into()
            ))
        );
    }

    #[test]
    fn rollback_ignores_replica_sets_of_other_owners_and_bad_revisions() {
        let d = deployment("web:3", Some(json!({REVISION_ANNOTATION: "3"})));
        let mut foreign = replica_set("web-0000", Some("2"), "evil:1", "2024-05-02T11:00:00Z");
        foreign["metadata"]["ownerReferences"][0]["uid"] = "another-uid".into();
        let mut not_controller =
            replica_set("web-1111", Some("2"), "evil:2", "2024-05-02T12:00:00Z");
        not_controller["metadata"]["ownerReferences"][0]["controller"] = false.into();
        let garbage = replica_set("web-2222", Some("two"), "evil:3", "2024-05-02T13:00:00Z");
        let rss = vec![
            foreign,
            history()[0].clone(),
            not_controller,
            garbage,
            history()[1].clone(),
        ];
        // Only revisions 1 and 3 are ours and valid: the previous one is 1.
        let ops = patch_ops(rb(&d, &rss, &Default::default()).unwrap());
        assert_eq!(ops[1]["value"], template("web:1", None));
    }

    #[test]
    fn rollback_selection_starts_from_revision_minus_one_like_kubectl() {
        // kubectl's deploymentRevision starts both the latest and the previous revision
        // at -1, so a ReplicaSet annotated with a revision below 0 is never chosen.
        let d = deployment("web:3", Some(json!({REVISION_ANNOTATION: "3"})));
        let rss = vec![
            replica_set("web-0000", Some("-2"), "web:0", "2024-04-01T10:00:00Z"),
            history()[1].clone(),
        ];
        assert_eq!(
            rb(&d, &rss, &Default::default()),
            Err(ExecError::failed(
                "no rollout history found for deployment \"web\""
            ))
        );
    }

    #[test]
    fn rollback_with_duplicate_or_collected_revisions_picks_what_kubectl_picks() {
        let d = deployment("web:3", Some(json!({REVISION_ANNOTATION: "3"})));
        // Two ReplicaSets claim revision 2 (a hand edit, a restore from backup): kubectl
        // iterates the old ones by creation, then the current one. For "previous" the
        // older one ends up chosen; for revision 2, the first in that order.
        let older = replica_set("web-aaaa", Some("2"), "web:2a", "2024-05-02T09:00:00Z");
        let newer = replica_set("web-bbbb", Some("2"), "web:2b", "2024-05-02T11:00:00Z");
        let current = history()[1].clone();
        for rss in [
            vec![older.clone(), newer.clone(), current.clone()],
            vec![current.clone(), newer.clone(), older.clone()],
        ] {
            let ops = patch_ops(rb(&d, &rss, &Default::default()).unwrap());
            assert_eq!(ops[1]["value"], template("web:2a", None));
            let params = RollbackDeploymentParams {
                to_revision: Some(2),
            };
            let ops = patch_ops(rb(&d, &rss, &params).unwrap());
            assert_eq!(ops[1]["value"], template("web:2a", None));
        }
        // Revision 2's ReplicaSet was garbage-collected (revisionHistoryLimit): the
        // previous revision is the newest one left, 1.
        let rss = vec![history()[0].clone(), current];
        match rb(&d, &rss, &Default::default()).unwrap() {
            Rollback::Patch(_, target) => assert_eq!(
                target,
                RollbackTarget {
                    revision: 1,
                    replica_set: "web-7c9f".into()
                }
            ),
            Rollback::Skipped(m) => panic!("{m}"),
        }
    }

    #[test]
    fn rollback_without_history_or_paused_fails_like_kubectl() {
        let d = deployment("web:3", Some(json!({REVISION_ANNOTATION: "3"})));
        let only = vec![history()[1].clone()];
        assert_eq!(
            rb(&d, &only, &Default::default()),
            Err(ExecError::failed(
                "no rollout history found for deployment \"web\""
            ))
        );
        let mut paused = d.clone();
        paused["spec"]["paused"] = true.into();
        let err = rb(&paused, &history(), &Default::default()).unwrap_err();
        assert!(err.message().contains("paused"), "{err}");
    }

    #[test]
    fn rollback_to_previous_waits_until_the_controller_observed_the_spec() {
        // The spec was just changed to web:4: the controller has not created its
        // ReplicaSet yet, so the newest ReplicaSet (revision 3) is still the running one,
        // and "the previous revision" would skip back two steps, to revision 2.
        let mut d = deployment("web:4", Some(json!({REVISION_ANNOTATION: "3"})));
        d["metadata"]["generation"] = 5.into();
        d["status"] = json!({"observedGeneration": 4});
        let err = rb(&d, &history(), &Default::default()).unwrap_err();
        assert!(
            matches!(&err, ExecError::Failed { message } if message.contains("observedGeneration 4")),
            "{err:?}"
        );
        // An explicit revision does not depend on which ReplicaSet is the newest.
        let params = RollbackDeploymentParams {
            to_revision: Some(2),
        };
        let ops = patch_ops(rb(&d, &history(), &params).unwrap());
        assert_eq!(ops[1]["value"], template("web:2", None));
        // Observed: the usual rollback.
        d["status"]["observedGeneration"] = 5.into();
        assert!(rb(&d, &history(), &Default::default()).is_ok());
    }

    #[test]
    fn rollback_adds_annotations_when_the_deployment_has_none_and_skips_test_without_rv() {
        let mut d = deployment("web:3", None);
        d["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        let ops = patch_ops(rb(&d, &history(), &Default::default()).unwrap());
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0]["path"], "/spec/template");
        assert_eq!(ops[1]["op"], "add");
        assert_eq!(
            ops[1]["value"],
            json!({"kubernetes.io/change-cause": "image web:2"})
        );
    }

    #[test]
    fn rollback_keeps_fields_unknown_to_this_build() {
        let d = deployment("web:3", Some(json!({REVISION_ANNOTATION: "3"})));
        let mut rss = history();
        rss[2]["spec"]["template"]["spec"]["someFutureField"] = json!({"x": [1, 2]});
        let ops = patch_ops(rb(&d, &rss, &Default::default()).unwrap());
        assert_eq!(
            ops[1]["value"]["spec"]["someFutureField"],
            json!({"x": [1, 2]})
        );
    }

    #[test]
    fn the_hash_label_alone_is_removed_with_its_map() {
        let mut t = template("web:1", Some("abc"));
        t["metadata"]["labels"] = json!({POD_TEMPLATE_HASH_LABEL: "abc"});
        let stripped = without_hash(&t);
        assert!(stripped["metadata"].get("labels").is_none());
        assert!(equal_ignore_hash(
            &t,
            &json!({"metadata": {"creationTimestamp": null}, "spec": t["spec"]})
        ));
    }

    fn pod(annotations: Value, owners: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-8a1e-x2x9z", "namespace": "shop", "uid": "pod-uid-1",
                "annotations": annotations, "ownerReferences": owners
            }
        })
    }

    #[test]
    fn restart_deletes_a_controlled_pod_with_its_uid_as_precondition() {
        let p = pod(
            json!({}),
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-8a1e",
                    "uid": "rs-uid", "controller": true}]),
        );
        let params = RestartPodParams {
            grace_period_seconds: Some(10),
        };
        let req = restart_request(
            &p,
            "shop",
            "web-8a1e-x2x9z",
            &params,
            PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(req.method, "DELETE");
        assert_eq!(req.path, "/api/v1/namespaces/shop/pods/web-8a1e-x2x9z");
        assert_eq!(
            req.body.unwrap(),
            json!({"apiVersion": "v1", "kind": "DeleteOptions",
                   "propagationPolicy": "Background", "gracePeriodSeconds": 10,
                   "preconditions": {"uid": "pod-uid-1"}})
        );
    }

    #[test]
    fn restart_never_force_deletes_a_pod() {
        // gracePeriodSeconds 0 makes the API server remove the pod object at once, before
        // its containers stop: a StatefulSet then starts the replacement while the old pod
        // may still run (two pods with one identity). kubectl turns 0 into 1 unless --force.
        let p = pod(
            json!({}),
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                    "uid": "sts-uid", "controller": true}]),
        );
        let params = RestartPodParams {
            grace_period_seconds: Some(0),
        };
        let req = restart_request(&p, "shop", "db-0", &params, PlanOptions::default()).unwrap();
        assert_eq!(req.body.as_ref().unwrap()["gracePeriodSeconds"], 1);
        // Without cluster state the planned DELETE is the same.
        let req = delete_pod_request("shop", "db-0", &params, None);
        assert_eq!(req.body.as_ref().unwrap()["gracePeriodSeconds"], 1);
    }

    #[test]
    fn restart_refuses_bare_and_mirror_pods() {
        let bare = pod(json!({}), json!([]));
        let params = RestartPodParams::default();
        let err = restart_request(&bare, "shop", "p", &params, PlanOptions::default()).unwrap_err();
        assert!(matches!(err, ExecError::Refused { .. }), "{err:?}");
        assert!(err.message().contains("--allow-bare-pod"));
        let allowed = PlanOptions {
            allow_bare_pod: true,
        };
        assert!(restart_request(&bare, "shop", "p", &params, allowed).is_ok());
        // A non-controller owner does not count.
        let weak = pod(
            json!({}),
            json!([{"kind": "ReplicaSet", "uid": "x", "controller": false}]),
        );
        assert!(restart_request(&weak, "shop", "p", &params, PlanOptions::default()).is_err());

        let mirror = pod(
            json!({MIRROR_POD_ANNOTATION: "3f2a"}),
            json!([{"apiVersion": "v1", "kind": "Node", "name": "cp-1", "uid": "n", "controller": true}]),
        );
        let err = restart_request(
            &mirror,
            "kube-system",
            "kube-apiserver-cp-1",
            &params,
            allowed,
        )
        .unwrap_err();
        assert!(matches!(err, ExecError::Refused { .. }));
        assert!(err.message().contains("mirror pod"), "{err}");
    }

    #[test]
    fn scale_is_a_merge_patch_of_the_scale_subresource() {
        let req = scale_request("shop", "web", 0);
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"method": "PATCH",
                   "path": "/apis/apps/v1/namespaces/shop/deployments/web/scale",
                   "contentType": "application/merge-patch+json",
                   "body": {"spec": {"replicas": 0}}})
        );
        let http = req.to_http().unwrap();
        assert_eq!(http.method(), "PATCH");
        assert_eq!(http.headers()["content-type"], MERGE_PATCH);
        assert_eq!(http.body().as_slice(), br#"{"spec":{"replicas":0}}"#);
    }

    #[test]
    fn label_selectors_print_and_match_like_kubernetes() {
        let sel = json!({
            "matchLabels": {"tier": "front", "app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "canary"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["b", "a"]},
                {"key": "owner", "operator": "Exists"}
            ]
        });
        assert_eq!(
            label_selector_string(&sel).unwrap(),
            "app=web,env in (canary,prod),!legacy,owner,tier=front,zone notin (a,b)"
        );
        let req = Read::ReplicaSets {
            namespace: "shop",
            selector: &json!({"matchLabels": {"app": "web"}}),
        }
        .request()
        .unwrap();
        assert_eq!(
            req.path,
            "/apis/apps/v1/namespaces/shop/replicasets?labelSelector=app%3Dweb"
        );
        let good = json!({"app": "web", "tier": "front", "env": "prod", "owner": "x"});
        assert!(selector_matches(&sel, Some(&good)));
        let mut bad = good.clone();
        bad["zone"] = "a".into();
        assert!(!selector_matches(&sel, Some(&bad)));
        let mut bad = good.clone();
        bad["legacy"] = "1".into();
        assert!(!selector_matches(&sel, Some(&bad)));
        assert!(!selector_matches(&sel, None));
        assert!(selector_matches(&json!({}), None));
        assert!(
            label_selector_string(&json!({"matchExpressions": [{"key": "a", "operator": "Gt"}]}))
                .is_err()
        );
    }
}
