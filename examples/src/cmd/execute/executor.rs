//! The [`Executor`] trait and its two implementations: [`DryRunExecutor`] (the default: the
//! requests it would send, no cluster needed) and [`KubeExecutor`] (sends them with `kube`).
//! Both compute the requests with [`plan::plan`]; the kube executor sends exactly the
//! [`ApiRequest`]s it planned, so a dry run prints what `--apply` sends.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use kubesafe_signing::admission::Admitted;
use serde::Serialize;
use serde_json::{Value, json};

use super::plan::{
    self, ApiRequest, ClusterRead, ExecError, PlanOptions, Read, ReadResult, RollbackTarget,
};

/// What an executor did with an admitted action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Execution {
    /// `dry-run` or `kube`.
    pub(crate) executor: &'static str,
    /// `planned` (dry run), `applied` (sent) or `skipped` (nothing to do).
    pub(crate) outcome: &'static str,
    /// Reads made, or that `--apply` would make.
    pub(crate) reads: Vec<ApiRequest>,
    /// Writes sent, or that `--apply` would send.
    pub(crate) writes: Vec<ApiRequest>,
    /// Why nothing was written, for `skipped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    /// Remarks (what a dry run could not compute without cluster state).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) notes: Vec<String>,
    /// The revision a rollback restores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<RollbackTarget>,
}

impl Execution {
    /// The execution as the audit log keeps it: writes in [`ApiRequest::for_audit`] form.
    pub(crate) fn for_audit(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut v {
            o.insert(
                "writes".into(),
                self.writes.iter().map(ApiRequest::for_audit).collect(),
            );
        }
        v
    }
}

/// Carries out admitted actions. Taking [`Admitted`] (which only
/// `kubesafe_signing::admission::Admission` creates) means nothing unverified or unadmitted
/// can reach an executor.
pub(crate) trait Executor {
    /// Executes `action`.
    async fn execute(&self, action: &Admitted) -> Result<Execution, ExecError>;
}

/// Cluster objects for dry runs: `kubectl get … -o json` output (one object or a `List`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    objects: Vec<Value>,
}

impl Snapshot {
    /// Loads a JSON object, a `List` (with `items`) or a JSON array of objects.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: Value = serde_json::from_slice(&text).map_err(|e| {
            format!(
                "{}: not JSON (line {} column {}): {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        Self::from_value(value).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The objects of `value` (an object, a `List` or an array).
    pub(crate) fn from_value(value: Value) -> Result<Self, String> {
        let mut objects = Vec::new();
        let mut pending = vec![value];
        while let Some(v) = pending.pop() {
            match v {
                Value::Array(items) => pending.extend(items.into_iter().rev()),
                Value::Object(mut o) if is_list(&o) => match o.remove("items") {
                    Some(Value::Array(items)) => pending.extend(items.into_iter().rev()),
                    Some(Value::Null) | None => {}
                    Some(_) => return Err("`items` is not a list".to_owned()),
                },
                Value::Object(o) => {
                    if o.get("kind").and_then(Value::as_str).is_none() {
                        return Err("an object without `kind`".to_owned());
                    }
                    objects.push(Value::Object(o));
                }
                other => return Err(format!("expected objects, found {other}")),
            }
        }
        Ok(Snapshot { objects })
    }

    fn find<'a>(&'a self, kind: &'a str, namespace: &'a str) -> impl Iterator<Item = &'a Value> {
        self.objects.iter().filter(move |o| {
            o.get("kind").and_then(Value::as_str) == Some(kind)
                && o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)
        })
    }

    fn named(&self, kind: &str, namespace: &str, name: &str) -> ReadResult {
        self.find(kind, namespace)
            .find(|o| o.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
            .map_or(ReadResult::NotFound, |o| ReadResult::Found(o.clone()))
    }
}

/// A `List` (`kind: …List`), or a kind-less object with `items`.
fn is_list(o: &serde_json::Map<String, Value>) -> bool {
    match o.get("kind").and_then(Value::as_str) {
        Some(kind) => kind.ends_with("List"),
        None => o.contains_key("items"),
    }
}

/// Reads answered from a [`Snapshot`], or "unknown" without one.
struct SnapshotReader<'a>(Option<&'a Snapshot>);

impl ClusterRead for SnapshotReader<'_> {
    async fn read(&self, read: Read<'_>) -> Result<ReadResult, ExecError> {
        let Some(snapshot) = self.0 else {
            return Ok(ReadResult::Unknown);
        };
        Ok(match read {
            Read::Pod { namespace, name } => snapshot.named("Pod", namespace, name),
            Read::Deployment { namespace, name } => snapshot.named("Deployment", namespace, name),
            Read::ReplicaSets {
                namespace,
                selector,
            } => {
                let items: Vec<Value> = snapshot
                    .find("ReplicaSet", namespace)
                    .filter(|rs| plan::selector_matches(selector, rs.pointer("/metadata/labels")))
                    .cloned()
                    .collect();
                ReadResult::Found(
                    json!({"apiVersion": "apps/v1", "kind": "ReplicaSetList", "items": items}),
                )
            }
        })
    }
}

/// The default executor: computes the requests `--apply` would send and sends nothing.
/// With a [`Snapshot`] the reads are answered from it, so the owner check of `restart_pod`
/// and the rollback patch are computed exactly; without one, those parts are noted as
/// computed at apply time.
#[derive(Debug, Clone, Default)]
pub(crate) struct DryRunExecutor {
    snapshot: Option<Snapshot>,
    options: PlanOptions,
}

impl DryRunExecutor {
    pub(crate) fn new(snapshot: Option<Snapshot>, options: PlanOptions) -> Self {
        DryRunExecutor { snapshot, options }
    }
}

impl Executor for DryRunExecutor {
    async fn execute(&self, action: &Admitted) -> Result<Execution, ExecError> {
        let reader = SnapshotReader(self.snapshot.as_ref());
        let plan = plan::plan(&reader, action.request(), self.options).await?;
        Ok(Execution {
            executor: "dry-run",
            outcome: if plan.skipped.is_some() {
                "skipped"
            } else {
                "planned"
            },
            reads: plan.reads,
            writes: plan.writes,
            message: plan.skipped,
            notes: plan.notes,
            target: plan.target,
        })
    }
}

/// Where `--apply` finds the cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct KubeTarget {
    /// A kubeconfig file (default: `KUBECONFIG`, `~/.kube/config`, or in-cluster).
    pub(crate) kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig (default: its current context).
    pub(crate) context: Option<String>,
}

/// The real executor: reads and writes through `kube`'s client, sending the planned
/// [`ApiRequest`]s verbatim, each exactly once.
pub(crate) struct KubeExecutor {
    /// For reads: kube's default retry of 429/503/504 answers (a read is safe to repeat).
    client: kube::Client,
    /// For writes: no retry, each is sent once.
    write_client: kube::Client,
    options: PlanOptions,
    /// Writes handed to the client so far: when the action times out, whether one may
    /// have reached the API server.
    writes_started: AtomicUsize,
}

impl std::fmt::Debug for KubeExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeExecutor")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl KubeExecutor {
    /// A client for `target`. Contacts nothing yet (only reads the kubeconfig and the
    /// credentials it names).
    pub(crate) async fn connect(target: &KubeTarget, options: PlanOptions) -> Result<Self, String> {
        let config = match (&target.kubeconfig, &target.context) {
            (None, None) => kube::Config::infer().await.map_err(|e| e.to_string())?,
            (path, context) => {
                let kubeconfig = match path {
                    Some(p) => kube::config::Kubeconfig::read_from(p)
                        .map_err(|e| format!("--kubeconfig {}: {e}", p.display()))?,
                    None => kube::config::Kubeconfig::read().map_err(|e| e.to_string())?,
                };
                let opts = kube::config::KubeConfigOptions {
                    context: context.clone(),
                    ..Default::default()
                };
                kube::Config::from_custom_kubeconfig(kubeconfig, &opts)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        // kube's client retries 429, 503 and 504 answers by default (up to 15 times). Fine
        // for reads; but a 504 ("request did not complete within the allotted timeout") may
        // come after a write was committed: resending the rollback patch then fails its
        // resourceVersion test and reports a failure for an applied rollback, and resending
        // the DELETE reports 404 for a deleted pod. Writes go through a client without the
        // retry, so each is sent once, as the dry run shows, and an unknown outcome is
        // reported as such.
        let mut write_config = config.clone();
        write_config.default_retry = false;
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        let write_client = kube::Client::try_from(write_config).map_err(|e| e.to_string())?;
        Ok(KubeExecutor {
            client,
            write_client,
            options,
            writes_started: AtomicUsize::new(0),
        })
    }

    /// Sends `request` verbatim; `Ok(None)` for a 404.
    async fn send(&self, request: &ApiRequest) -> Result<Option<Value>, ExecError> {
        match self.client.request::<Value>(request.to_http()?).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(e) => Err(api_error(request, &e)),
        }
    }

    /// Sends a write once. A 4xx answer or a failed connection means it was not applied
    /// ([`ExecError::Failed`]); a 5xx answer or an error after the connection was made
    /// leaves its outcome unknown ([`ExecError::Unknown`]).
    async fn send_write(&self, request: &ApiRequest) -> Result<(), ExecError> {
        let http = request.to_http()?;
        self.writes_started.fetch_add(1, Ordering::SeqCst);
        match self.write_client.request::<Value>(http).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let message = api_error(request, &e).message().to_owned();
                Err(if write_not_applied(&e) {
                    ExecError::Failed { message }
                } else {
                    ExecError::Unknown { message }
                })
            }
        }
    }

    /// How many writes were handed to the client (0 for "nothing can have been applied").
    pub(crate) fn writes_started(&self) -> usize {
        self.writes_started.load(Ordering::SeqCst)
    }
}

/// Whether a write that ended in `error` was certainly not applied: the API server refused
/// it (4xx; not 408, which a proxy may send after forwarding it), or no connection was made
/// (refused, TLS handshake, connect timeout).
fn write_not_applied(error: &kube::Error) -> bool {
    if let kube::Error::Api(status) = error {
        return (400..500).contains(&status.code) && status.code != 408;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

fn api_error(request: &ApiRequest, error: &kube::Error) -> ExecError {
    let detail = match error {
        kube::Error::Api(status) => format!(
            "{} {}: {}",
            status.code,
            if status.reason.is_empty() {
                "error"
            } else {
                &status.reason
            },
            status.message
        ),
        other => {
            // The cause (refused connection, unknown certificate issuer, …) is deep in the
            // source chain; "client error (Connect)" alone does not help an operator.
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    };
    ExecError::failed(format!("{}: {detail}", request.summary()))
}

impl ClusterRead for KubeExecutor {
    async fn read(&self, read: Read<'_>) -> Result<ReadResult, ExecError> {
        Ok(match self.send(&read.request()?).await? {
            Some(v) => ReadResult::Found(v),
            None => ReadResult::NotFound,
        })
    }
}

impl Executor for KubeExecutor {
    async fn execute(&self, action: &Admitted) -> Result<Execution, ExecError> {
        let plan = plan::plan(self, action.request(), self.options).await?;
        for (i, write) in plan.writes.iter().enumerate() {
            if let Err(err) = self.send_write(write).await {
                return Err(if i > 0 {
                    // Partly applied: not retried by itself either.
                    ExecError::Unknown {
                        message: format!("{err} (after {i} earlier write(s) succeeded)"),
                    }
                } else {
                    err
                });
            }
            tracing::info!(request = %write.summary(), "sent");
        }
        Ok(Execution {
            executor: "kube",
            outcome: if plan.skipped.is_some() {
                "skipped"
            } else {
                "applied"
            },
            reads: plan.reads,
            writes: plan.writes,
            message: plan.skipped,
            notes: plan.notes,
            target: plan.target,
        })
    }
}

/// Either executor, chosen at run time.
#[derive(Debug)]
pub(crate) enum AnyExecutor {
    DryRun(DryRunExecutor),
    Kube(KubeExecutor),
}

impl AnyExecutor {
    /// How many writes were handed to the cluster client (always 0 for a dry run).
    pub(crate) fn writes_started(&self) -> usize {
        match self {
            AnyExecutor::DryRun(_) => 0,
            AnyExecutor::Kube(e) => e.writes_started(),
        }
    }
}

impl Executor for AnyExecutor {
    async fn execute(&self, action: &Admitted) -> Result<Execution, ExecError> {
        match self {
            AnyExecutor::DryRun(e) => e.execute(action).await,
            AnyExecutor::Kube(e) => e.execute(action).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_and_failed_connections_mean_a_write_was_not_applied() {
        let api = |code: u16| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("x", "y").with_code(code),
            ))
        };
        // Refused by the API server (validation, conflict, precondition, throttling).
        for code in [400, 403, 404, 409, 422, 429] {
            assert!(write_not_applied(&api(code)), "{code}");
        }
        // 5xx may follow a committed write; a 408 from a proxy may follow a forwarded one.
        for code in [408, 500, 503, 504] {
            assert!(!write_not_applied(&api(code)), "{code}");
        }
        // An error after the answer came (say, an undecodable body): unknown.
        let serde = serde_json::from_str::<Value>("{").unwrap_err();
        assert!(!write_not_applied(&kube::Error::SerdeError(serde)));
    }

    #[test]
    fn snapshots_take_objects_lists_and_arrays() {
        let s = Snapshot::from_value(json!({
            "apiVersion": "v1", "kind": "List",
            "items": [
                {"kind": "Pod", "metadata": {"name": "a", "namespace": "x"}},
                {"kind": "DeploymentList", "items": [
                    {"kind": "Deployment", "metadata": {"name": "d", "namespace": "x"}}
                ]}
            ]
        }))
        .unwrap();
        assert_eq!(s.objects.len(), 2);
        assert!(matches!(s.named("Pod", "x", "a"), ReadResult::Found(_)));
        assert_eq!(s.named("Pod", "y", "a"), ReadResult::NotFound);
        assert!(matches!(
            s.named("Deployment", "x", "d"),
            ReadResult::Found(_)
        ));
        let s = Snapshot::from_value(json!([{"kind": "Pod", "metadata": {}}])).unwrap();
        assert_eq!(s.objects.len(), 1);
        assert!(Snapshot::from_value(json!([{"metadata": {}}])).is_err());
        assert!(Snapshot::from_value(json!("pod")).is_err());
    }
}
