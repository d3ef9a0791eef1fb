//! A stateful fake of the Kubernetes API over real HTTP: any namespaced or
//! cluster-wide collection under `/api` and `/apis`, with get, paginated
//! list (label and field selectors), watch from a resourceVersion, create,
//! replace (resourceVersion conflicts), merge and JSON patch (status as a
//! subresource, generation bumped on spec changes), delete (finalizers
//! honoured); discovery of the `gantry.dev` group with or without its
//! CRDs; the API server's answer for a missing namespace. With `kubelet`,
//! every ReplicaSet's pods exist and are available as soon as it asks for
//! them, and each Service's EndpointSlice lists the pods it selects; with
//! `readiness_gates` too, pods carry the AWS Load Balancer Controller's
//! readiness gates.
//!
//! What the controller process needs to start, elect and stop, and what
//! the scale benchmark drives 10,000 Rollouts through. Every request is
//! counted.

mod endpoints;
mod faults;
mod query;
mod server;
mod store;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::Method;
use serde_json::Value;
use tokio::sync::watch;

pub use endpoints::pod_ip;
use server::Shared;
pub use store::Stale;
use store::Store;

/// How the fake cluster behaves.
#[derive(Clone, Default)]
pub struct Options {
    pub crds_installed: bool,
    /// The namespaces that exist; `None`: any.
    pub namespaces: Option<Vec<String>>,
    /// Play kubelet (and the ReplicaSet and EndpointSlice controllers):
    /// ReplicaSets' pods exist and are available at once, and are listed
    /// behind the Services selecting them.
    pub kubelet: bool,
    /// Record managedFields on every write, as the API server does.
    pub managed_fields: bool,
    /// With `kubelet`: serve the AWS Load Balancer Controller's
    /// TargetGroupBindings and play its webhook, which gives a new pod a
    /// readiness gate per binding whose Service selects it (a gated pod is
    /// Ready once something sets its gates' conditions true).
    pub readiness_gates: bool,
}

#[derive(Clone)]
pub struct FakeApi {
    shared: Arc<Shared>,
    pub port: u16,
}

/// Serves a fake API server with `namespaces`; the runtime keeps it alive.
pub fn start(crds_installed: bool, namespaces: &[&str]) -> (FakeApi, tokio::runtime::Runtime) {
    start_with(Options {
        crds_installed,
        namespaces: Some(namespaces.iter().map(|n| n.to_string()).collect()),
        ..Default::default()
    })
}

pub fn start_with(options: Options) -> (FakeApi, tokio::runtime::Runtime) {
    let store = Store {
        crds_installed: options.crds_installed,
        namespaces: options
            .namespaces
            .map(|n| n.into_iter().collect::<BTreeSet<_>>()),
        kubelet: options.kubelet,
        managed_fields: options.managed_fields,
        readiness_gates: options.readiness_gates,
        ..Default::default()
    };
    let shared = Arc::new(Shared {
        store: Mutex::new(store),
        grew: watch::Sender::new(0),
        requests: Mutex::new(Vec::new()),
        writes: Mutex::new(Vec::new()),
        forbid_patches: Mutex::new(None),
        faults: Default::default(),
    });
    let app = Router::new()
        .fallback(server::handle)
        .with_state(shared.clone());
    let (port, runtime) = crate::serve(app, "the fake Kubernetes API");
    (FakeApi { shared, port }, runtime)
}

impl FakeApi {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig file for the fake (token auth, namespace `default`).
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        self.kubeconfig_via(dir, self.port)
    }

    /// The same, for a relay to the fake on `port`.
    pub fn kubeconfig_via(&self, dir: &std::path::Path, port: u16) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
             users: [{{name: fake, user: {{token: fake-token}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: default}}}}]\n"
        );
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// A client of the fake.
    pub fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Creates `object` in `collection` (e.g. `apis/apps/v1/replicasets`),
    /// as a client's POST would.
    pub fn create(&self, collection: &str, object: Value) -> Value {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut store = self.shared.store.lock().unwrap();
        let created = store
            .create((collection.to_string(), ns, name), object)
            .unwrap_or_else(|(code, message, _)| panic!("create: {code} {message}"));
        self.shared.grew.send_replace(store.resource_version);
        created
    }

    /// Merge-patches an object, as a client's PATCH would.
    pub fn merge_patch(&self, collection: &str, ns: &str, name: &str, patch: &Value) -> Value {
        self.patch(collection, ns, name, false, patch)
    }

    /// Merge-patches an object's status subresource, as the controller would.
    pub fn patch_status(&self, collection: &str, ns: &str, name: &str, patch: &Value) -> Value {
        self.patch(collection, ns, name, true, patch)
    }

    fn patch(&self, collection: &str, ns: &str, name: &str, status: bool, patch: &Value) -> Value {
        let key = (collection.to_string(), ns.to_string(), name.to_string());
        let mut store = self.shared.store.lock().unwrap();
        let patched = store
            .patch(key, status, "application/merge-patch+json", patch)
            .unwrap_or_else(|(code, message, _)| panic!("patch: {code} {message}"));
        self.shared.grew.send_replace(store.resource_version);
        patched
    }

    pub fn get(&self, collection: &str, ns: &str, name: &str) -> Option<Value> {
        let key = (collection.to_string(), ns.to_string(), name.to_string());
        self.shared.store.lock().unwrap().get(&key).cloned()
    }

    /// Every object of `collection`.
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let store = self.shared.store.lock().unwrap();
        store
            .objects
            .iter()
            .filter(|(key, _)| key.0 == collection)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// How many objects of `collection` satisfy `test` (nothing copied).
    pub fn count(&self, collection: &str, test: impl Fn(&Value) -> bool) -> usize {
        let store = self.shared.store.lock().unwrap();
        store
            .objects
            .iter()
            .filter(|(key, object)| key.0 == collection && test(object))
            .count()
    }

    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get("apis/coordination.k8s.io/v1/leases", namespace, name)
    }

    /// The writes received since the last call: method, path with query, body.
    pub fn take_writes(&self) -> Vec<(Method, String, Value)> {
        std::mem::take(&mut *self.shared.writes.lock().unwrap())
    }

    /// Refuses every PATCH from now on with 403 and `message`, as RBAC would.
    pub fn forbid_patches(&self, message: &str) {
        *self.shared.forbid_patches.lock().unwrap() = Some(message.to_string());
    }

    /// Every watch stream open now ends, without an error (as at the
    /// server's watch timeout).
    pub fn end_watches(&self) {
        self.shared.faults.ended.send_modify(|n| *n += 1);
    }

    /// Compacts the history: a watch resumed from any version before now
    /// is answered `410 Gone`.
    pub fn compact(&self) {
        let now = self.shared.store.lock().unwrap().resource_version;
        *self.shared.faults.compacted.lock().unwrap() = now;
    }

    /// The next writes are refused with these status codes (and
    /// `Retry-After` seconds), in order.
    pub fn refuse_writes(&self, refusals: &[(u16, Option<u32>)]) {
        let mut queue = self.shared.faults.refusals.lock().unwrap();
        queue.extend(refusals.iter().copied());
    }

    /// A second writer: `patch` is applied to the status at `path`
    /// (`/apis/…/status`) just before the next write to it arrives, which
    /// then conflicts if it was based on the version before.
    pub fn interpose_status_write(&self, path: &str, patch: Value) {
        *self.shared.faults.interposed.lock().unwrap() = Some((path.to_string(), patch));
    }

    /// How many refusals set by `refuse_writes` are still to come.
    pub fn refusals_left(&self) -> usize {
        self.shared.faults.refusals.lock().unwrap().len()
    }

    /// Every answer from now on waits `delay` first.
    pub fn slow_down(&self, delay: std::time::Duration) {
        *self.shared.faults.delay.lock().unwrap() = delay;
    }

    /// The conditional writes refused so far because the object had
    /// changed since the version they were based on, and how many writes
    /// were conditional.
    pub fn stale_writes(&self) -> (Vec<Stale>, u64) {
        let store = self.shared.store.lock().unwrap();
        (store.stale.clone(), store.conditional)
    }

    /// The requests received since the last call: method and path with query.
    pub fn take_requests(&self) -> Vec<(Method, String)> {
        std::mem::take(&mut *self.shared.requests.lock().unwrap())
    }
}
