//! A cluster for the process tests, reached only through a Kubernetes
//! client: the cluster `KUBECONFIG` names (the CRDs installed, a fresh
//! namespace, the kubelet played where there are no nodes), or else the
//! fake API server playing kubelet. The same code drives both.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, CustomResourceExt, ResourceExt};
use rollout_core::types::{AnalysisTemplate, Rollout};
use serde_json::{Value, json};

use crate::kube_fake::{self, FakeApi};

pub struct Cluster {
    pub client: Client,
    /// The namespace the test owns.
    pub ns: String,
    /// A kubeconfig for processes (the controller).
    pub kubeconfig: PathBuf,
    rt: tokio::runtime::Runtime,
    fake: Option<(FakeApi, tokio::runtime::Runtime)>,
    kubelet: Option<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    /// `KUBECONFIG`'s cluster if set, else a fake one playing kubelet;
    /// `name` makes the namespace (unique per process on a real cluster).
    pub fn new(name: &str, dir: &Path) -> Cluster {
        let Some(kubeconfig) = std::env::var_os("KUBECONFIG").map(PathBuf::from) else {
            return Cluster::fake(name, dir, false);
        };
        Cluster::real(name, kubeconfig)
    }

    /// The fake, its pods getting the AWS Load Balancer Controller's
    /// readiness gates from its webhook (`kube_fake::Options`). `None` with
    /// `KUBECONFIG`: a bare API server has no such webhook.
    pub fn with_readiness_gates(name: &str, dir: &Path) -> Option<Cluster> {
        Cluster::with_readiness_gates_available().then(|| Cluster::fake(name, dir, true))
    }

    /// Whether `with_readiness_gates` gives a cluster here.
    pub fn with_readiness_gates_available() -> bool {
        std::env::var_os("KUBECONFIG").is_none()
    }

    fn fake(name: &str, dir: &Path, readiness_gates: bool) -> Cluster {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (api, server) = kube_fake::start_with(kube_fake::Options {
            crds_installed: true,
            kubelet: true,
            readiness_gates,
            ..Default::default()
        });
        let client = rt.block_on(async { api.client() });
        Cluster {
            client,
            ns: name.to_string(),
            kubeconfig: api.kubeconfig(dir),
            rt,
            fake: Some((api, server)),
            kubelet: None,
        }
    }

    fn real(name: &str, kubeconfig: PathBuf) -> Cluster {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = rt
            .block_on(Client::try_default())
            .expect("the cluster from KUBECONFIG");
        let ns = format!("{name}-{}", std::process::id());
        let kubelet = rt.block_on(async {
            install_crds(&client).await;
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let object = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            namespaces
                .create(&PostParams::default(), &object)
                .await
                .unwrap();
            let nodes: Api<Node> = Api::all(client.clone());
            let none = nodes
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty();
            none.then(|| tokio::spawn(play_kubelet(Api::namespaced(client.clone(), &ns))))
        });
        Cluster {
            client,
            ns,
            kubeconfig,
            rt,
            fake: None,
            kubelet,
        }
    }

    /// Runs `f` on the cluster's runtime (for clients and tasks that need one).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// The objects of `resource`'s kind in the test's namespace.
    fn api(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, resource)
    }

    /// Creates `object` (its kind's `resource`) in the namespace.
    pub fn create(&self, resource: &ApiResource, mut object: Value) {
        object["metadata"]["namespace"] = json!(self.ns);
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        self.block_on(self.api(resource).create(&PostParams::default(), &object))
            .unwrap_or_else(|e| panic!("create {}: {e}", object.name_any()));
    }

    pub fn get(&self, resource: &ApiResource, name: &str) -> Option<Value> {
        let object = self.block_on(self.api(resource).get_opt(name)).ok()??;
        Some(serde_json::to_value(object).unwrap())
    }

    pub fn list(&self, resource: &ApiResource) -> Vec<Value> {
        let list = self.block_on(self.api(resource).list(&ListParams::default()));
        list.map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .collect()
    }

    pub fn delete(&self, resource: &ApiResource, name: &str) {
        let api = self.api(resource);
        self.block_on(api.delete(name, &DeleteParams::default()))
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }

    /// Plays the Job controller and the kubelet for a Job: on the fake, its
    /// status says it completed (or failed); on a real cluster its pods
    /// report that they ran to the end (or failed), and the Job controller
    /// takes it from there.
    pub fn finish_job(&self, name: &str, succeeded: bool) {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        if self.fake.is_some() {
            let (kind, count) = if succeeded {
                ("Complete", "succeeded")
            } else {
                ("Failed", "failed")
            };
            let mut conditions =
                vec![json!({"type": kind, "status": "True", "lastTransitionTime": now})];
            if succeeded {
                conditions.insert(0, json!({"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now}));
            } else {
                conditions.insert(0, json!({"type": "FailureTarget", "status": "True", "lastTransitionTime": now, "reason": "BackoffLimitExceeded"}));
                conditions[1]["reason"] = json!("BackoffLimitExceeded");
                conditions[1]["message"] = json!("Job has reached the specified backoff limit");
            }
            let status = json!({"status": {"startTime": now, "completionTime": if succeeded { json!(now) } else { json!(null) },
                count: 1, "conditions": conditions}});
            return self.merge_patch(&jobs(), name, &status, true);
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let selector = format!("batch.kubernetes.io/job-name={name}");
        let listed = self
            .block_on(pods.list(&ListParams::default().labels(&selector)))
            .unwrap_or_else(|e| panic!("pods of Job {name}: {e}"));
        let (phase, code) = if succeeded {
            ("Succeeded", 0)
        } else {
            ("Failed", 1)
        };
        for pod in listed.items {
            let container = pod
                .spec
                .as_ref()
                .map(|s| s.containers[0].name.clone())
                .unwrap_or_default();
            let status = json!({"status": {"phase": phase, "containerStatuses": [{
                "name": container, "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "startedAt": now, "finishedAt": now}}}]}});
            self.block_on(pods.patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status),
            ))
            .unwrap_or_else(|e| panic!("pod {}: {e}", pod.name_any()));
        }
    }

    /// A JSON merge patch of the object, or of its status.
    pub fn merge_patch(&self, resource: &ApiResource, name: &str, patch: &Value, status: bool) {
        let api = self.api(resource);
        let params = PatchParams::default();
        let patch = Patch::Merge(patch);
        let result = self.block_on(async {
            match status {
                true => api.patch_status(name, &params, &patch).await,
                false => api.patch(name, &params, &patch).await,
            }
        });
        result.unwrap_or_else(|e| panic!("patch {name}: {e}"));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(k) = self.kubelet.take() {
            k.abort();
        }
        if self.fake.is_none() {
            let namespaces: Api<Namespace> = Api::all(self.client.clone());
            let _ = self
                .rt
                .block_on(namespaces.delete(&self.ns, &DeleteParams::default()));
        }
    }
}

/// The kinds the process tests read and write through `Cluster`.
pub fn rollouts() -> ApiResource {
    ApiResource::erase::<Rollout>(&())
}

pub fn services() -> ApiResource {
    ApiResource::erase::<Service>(&())
}

pub fn replica_sets() -> ApiResource {
    ApiResource::erase::<ReplicaSet>(&())
}

pub fn ingresses() -> ApiResource {
    ApiResource::erase::<Ingress>(&())
}

pub fn jobs() -> ApiResource {
    ApiResource::erase::<Job>(&())
}

pub fn analysis_templates() -> ApiResource {
    ApiResource::erase::<AnalysisTemplate>(&())
}

/// Waits up to 2 minutes for `probe` to give a value.
pub async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The CRDs from the types, server-side applied, once established.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let apply = PatchParams::apply("gantry-tests").force();
    for crd in [Rollout::crd(), AnalysisTemplate::crd()] {
        let name = crd.name_any();
        crds.patch(&name, &apply, &Patch::Apply(crd)).await.unwrap();
        wait_for(&format!("CRD {name} to be established"), async || {
            let crd = crds.get(&name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await;
    }
}

/// What a kubelet reports for a pod that started: an IP and Ready (a
/// strategic merge keeps the other conditions). The ReplicaSet controller
/// derives its ready and available counts from exactly this (patching
/// ReplicaSet status instead is overwritten by it), and the EndpointSlice
/// controller lists the pod behind the Services selecting it.
pub async fn play_kubelet(pods: Api<Pod>) {
    loop {
        let listed = pods.list(&ListParams::default()).await;
        for pod in listed.map(|l| l.items).unwrap_or_default() {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let ip = kube_fake::pod_ip(&pod.name_any());
            let status = json!({"status": {"podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}});
            let _ = pods
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(status),
                )
                .await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
