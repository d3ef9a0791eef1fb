//! A stateful fake of the Kubernetes API over real HTTP, for what the
//! controller process needs to start, elect and stop: discovery of the
//! `gantry.dev` group (with or without its CRDs), empty lists, watches that
//! stay open without events, Events, and Leases with resourceVersion
//! conflicts and the API server's answer for a missing namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Default)]
pub struct FakeState {
    pub crds_installed: bool,
    pub namespaces: BTreeSet<String>,
    /// (namespace, name) → Lease.
    pub leases: BTreeMap<(String, String), Value>,
    resource_version: u64,
}

#[derive(Clone)]
pub struct FakeApi {
    pub state: Arc<Mutex<FakeState>>,
    pub port: u16,
}

/// Serves a fake API server with `namespaces`; the runtime keeps it alive.
pub fn start(crds_installed: bool, namespaces: &[&str]) -> (FakeApi, tokio::runtime::Runtime) {
    let state = Arc::new(Mutex::new(FakeState {
        crds_installed,
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }));
    let app = Router::new().fallback(handle).with_state(state.clone());
    let (port, runtime) = crate::serve(app, "the fake Kubernetes API");
    (FakeApi { state, port }, runtime)
}

impl FakeApi {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig file for the fake (token auth, namespace `default`).
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\n\
             users: [{{name: fake, user: {{token: fake-token}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: default}}}}]\n",
            self.url()
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

    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        let state = self.state.lock().unwrap();
        state
            .leases
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

fn status(code: StatusCode, message: &str, details: Value) -> Response {
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::CONFLICT => "Conflict",
        _ => "BadRequest",
    };
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "details": details, "code": code.as_u16()});
    reply(code, &body)
}

fn reply(code: StatusCode, body: &Value) -> Response {
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    (code, json, body.to_string()).into_response()
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    let query = uri.query().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    if method == Method::GET && path == "/apis/gantry.dev/v1alpha1" {
        return discovery(state.lock().unwrap().crds_installed);
    }
    if let [
        "apis",
        "coordination.k8s.io",
        "v1",
        "namespaces",
        ns,
        "leases",
        rest @ ..,
    ] = segments.as_slice()
    {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return lease(&mut state.lock().unwrap(), &method, ns, rest.first(), body);
    }
    if method == Method::GET
        && query
            .split('&')
            .any(|q| q == "watch=true" || q == "watch=1")
    {
        // Open, and silent: nothing changes in this cluster.
        return Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>())
            .into_response();
    }
    match method {
        Method::GET => reply(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "List",
                    "metadata": {"resourceVersion": "1"}, "items": []}),
        ),
        // Events are recorded and forgotten.
        Method::POST if path.ends_with("/events") => (StatusCode::CREATED, body).into_response(),
        _ => status(
            StatusCode::NOT_FOUND,
            "the server could not find the requested resource",
            json!({}),
        ),
    }
}

fn discovery(installed: bool) -> Response {
    if !installed {
        return status(
            StatusCode::NOT_FOUND,
            "the server could not find the requested resource",
            json!({}),
        );
    }
    let resource = |name: &str, kind: &str| {
        json!({"name": name, "singularName": "", "namespaced": true, "kind": kind,
               "verbs": ["get", "list", "watch", "patch", "update"]})
    };
    reply(
        StatusCode::OK,
        &json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "gantry.dev/v1alpha1",
            "resources": [resource("rollouts", "Rollout"), resource("rollouts/status", "Rollout"),
                          resource("analysistemplates", "AnalysisTemplate")]
        }),
    )
}

fn lease(
    state: &mut FakeState,
    method: &Method,
    ns: &str,
    name: Option<&&str>,
    mut body: Value,
) -> Response {
    let not_found = |name: &str| {
        status(
            StatusCode::NOT_FOUND,
            &format!("leases.coordination.k8s.io \"{name}\" not found"),
            json!({"name": name, "group": "coordination.k8s.io", "kind": "leases"}),
        )
    };
    match (method, name) {
        (&Method::GET, Some(name)) => match state.leases.get(&(ns.to_string(), name.to_string())) {
            Some(lease) => reply(StatusCode::OK, lease),
            None => not_found(name),
        },
        (&Method::POST, None) => {
            if !state.namespaces.contains(ns) {
                return status(
                    StatusCode::NOT_FOUND,
                    &format!("namespaces \"{ns}\" not found"),
                    json!({"name": ns, "kind": "namespaces"}),
                );
            }
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let key = (ns.to_string(), name.clone());
            if state.leases.contains_key(&key) {
                return status(
                    StatusCode::CONFLICT,
                    &format!("leases.coordination.k8s.io \"{name}\" already exists"),
                    json!({}),
                );
            }
            store(state, key, &mut body);
            reply(StatusCode::CREATED, &body)
        }
        (&Method::PUT, Some(name)) => {
            let key = (ns.to_string(), name.to_string());
            let Some(current) = state.leases.get(&key) else {
                return not_found(name);
            };
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                return status(
                    StatusCode::CONFLICT,
                    "the object has been modified; please apply your changes to the latest version and try again",
                    json!({}),
                );
            }
            store(state, key, &mut body);
            reply(StatusCode::OK, &body)
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "not supported by the fake",
            json!({}),
        ),
    }
}

fn store(state: &mut FakeState, key: (String, String), lease: &mut Value) {
    state.resource_version += 1;
    lease["metadata"]["namespace"] = json!(key.0);
    lease["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
    state.leases.insert(key, lease.clone());
}
