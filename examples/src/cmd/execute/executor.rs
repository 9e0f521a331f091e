//! The [`Executor`] trait and its two implementations: [`DryRunExecutor`] (the default: the
//! requests it would send, no cluster needed) and [`KubeExecutor`] (sends them with `kube`).
//! Both compute the requests with [`plan::plan`]; the kube executor sends exactly the
//! [`ApiRequest`]s it planned, so a dry run prints what `--apply` sends.

use std::path::{Path, PathBuf};

use kubesafe_signing::admission::Admitted;
use serde::Serialize;
use serde_json::{Value, json};

use super::plan::{self, ApiRequest, ClusterRead, ExecError, PlanOptions, Read, ReadResult};

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
/// [`ApiRequest`]s verbatim.
#[derive(Clone)]
pub(crate) struct KubeExecutor {
    client: kube::Client,
    options: PlanOptions,
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
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        Ok(KubeExecutor { client, options })
    }

    /// Sends `request` verbatim; `Ok(None)` for a 404.
    async fn send(&self, request: &ApiRequest) -> Result<Option<Value>, ExecError> {
        match self.client.request::<Value>(request.to_http()?).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(e) => Err(api_error(request, &e)),
        }
    }
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
            let result = match self.send(write).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(ExecError::failed(format!(
                    "{}: 404 NotFound",
                    write.summary()
                ))),
                Err(e) => Err(e),
            };
            if let Err(err) = result {
                return Err(if i > 0 {
                    ExecError::failed(format!("{err} (after {i} earlier write(s) succeeded)"))
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
        })
    }
}

/// Either executor, chosen at run time.
#[derive(Debug)]
pub(crate) enum AnyExecutor {
    DryRun(DryRunExecutor),
    Kube(KubeExecutor),
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
