//! A canary on the fake API server as the process tests drive it:
//! `shop/backend` with its two Services, its ALB Ingress and notification
//! destinations (a signed webhook and Slack) pointing at a `Receiver` on
//! loopback; the `rollout-controller` process started on it, off AWS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::controller::Controller;
use crate::fixtures::no_alb_timing;
use crate::kube_fake::{self, FakeApi};
use crate::{free_port, serve};

pub const ROLLOUTS: &str = "apis/gantry.dev/v1alpha1/rollouts";
pub const HMAC_KEY: &str = "hmac-key-never-logged";
pub const SLACK_PATH: &str = "/slack/T0000/B0000/token-never-logged";
/// Two steps to a pause, twice.
pub const PAUSES: &str = r#"[{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]"#;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Timestamp,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

#[derive(Default)]
pub struct Behaviour {
    got: Mutex<Vec<Received>>,
    answered: Mutex<usize>,
    /// Answer 500 to this many requests first.
    fail: Mutex<usize>,
}

/// An HTTP receiver on loopback; `hold` keeps every answer back until
/// set to false.
pub struct Receiver {
    pub port: u16,
    pub state: Arc<(Behaviour, watch::Sender<bool>)>,
    _runtime: tokio::runtime::Runtime,
}

async fn receive(
    State(state): State<Arc<(Behaviour, watch::Sender<bool>)>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (behaviour, hold) = &*state;
    behaviour.got.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers,
        body,
        at: Timestamp::now(),
    });
    let _ = hold.subscribe().wait_for(|held| !held).await;
    *behaviour.answered.lock().unwrap() += 1;
    let mut fail = behaviour.fail.lock().unwrap();
    if *fail > 0 {
        *fail -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

impl Receiver {
    pub fn start(fail: usize, hold: bool) -> Receiver {
        let behaviour = Behaviour {
            fail: Mutex::new(fail),
            ..Default::default()
        };
        let state = Arc::new((behaviour, watch::Sender::new(hold)));
        let app = Router::new().fallback(receive).with_state(state.clone());
        let (port, runtime) = serve(app, "the notification receiver");
        Receiver {
            port,
            state,
            _runtime: runtime,
        }
    }

    pub fn got(&self) -> Vec<Received> {
        self.state.0.got.lock().unwrap().clone()
    }

    pub fn answered(&self) -> usize {
        *self.state.0.answered.lock().unwrap()
    }

    /// The requests with `event` (X-Gantry-Event) to `path`.
    pub fn events(&self, path: &str, event: &str) -> Vec<Received> {
        self.got()
            .into_iter()
            .filter(|r| r.path == path && r.header("x-gantry-event") == event)
            .collect()
    }

    pub fn wait_for(&self, path: &str, event: &str) -> Received {
        wait(
            &format!("{event} at {path}: got {:?}", self.summary()),
            || self.events(path, event).last().cloned(),
        )
    }

    pub fn summary(&self) -> Vec<(String, String)> {
        self.got()
            .iter()
            .map(|r| (r.path.clone(), r.header("x-gantry-delivery").to_string()))
            .collect()
    }
}

pub fn wait<T>(what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = done() {
            return t;
        }
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The destinations, the Secret, and `backend` with its Services and
/// Ingress, its canary taking `steps` (JSON).
pub fn cluster(
    receiver: &Receiver,
    audit_triggers: &str,
    annotations: Value,
    steps: &str,
) -> FakeApi {
    let (api, runtime) = kube_fake::start_with(kube_fake::Options {
        crds_installed: true,
        kubelet: true,
        ..Default::default()
    });
    std::mem::forget(runtime); // serves until the test process ends
    let base = format!("http://127.0.0.1:{}", receiver.port);
    api.create("api/v1/configmaps", json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "gantry-notifications", "namespace": "gantry-system"},
        "data": {
            "destination.audit": format!("webhook:\n  url: {base}/audit\n  headers: {{X-Team: payments}}\n  hmacSecret: $audit-hmac\ntriggers: {audit_triggers}\n"),
            "destination.chat": "slack: {url: $slack-url}\n",
        }
    }));
    api.create("api/v1/secrets", json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "gantry-notifications", "namespace": "gantry-system"},
        "data": {"audit-hmac": base64(HMAC_KEY), "slack-url": base64(&format!("{base}{SLACK_PATH}"))}
    }));
    api.create(ROLLOUTS, json!({
        "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "backend", "namespace": "shop", "annotations": annotations},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "backend"}},
            "template": {"metadata": {"labels": {"app": "backend"}},
                         "spec": {"containers": [{"name": "api", "image": "shop/backend:1.0.0"}]}},
            "strategy": {"canary": {"canaryService": "backend-canary", "stableService": "backend",
                "trafficRouting": {"alb": {"ingress": "backend", "servicePort": 80, "targetHealth": no_alb_timing()}},
                "steps": serde_json::from_str::<Value>(steps).expect("steps are JSON")}}}
    }));
    for name in ["backend", "backend-canary"] {
        api.create("api/v1/services", json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80}]}
        }));
    }
    api.create("apis/networking.k8s.io/v1/ingresses", json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "backend", "namespace": "shop"},
        "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "backend", "port": {"name": "use-annotation"}}}}]}}]}
    }));
    api
}

/// The controller on `api`, leading from `gantry-system`, off AWS.
pub fn controller(api: &FakeApi, dir: &std::path::Path, extra: &[&str]) -> Controller {
    controller_via(api, api.port, dir, extra)
}

/// The controller reaching `api` through the relay on `port` (see
/// `crate::outage`).
pub fn controller_via(
    api: &FakeApi,
    port: u16,
    dir: &std::path::Path,
    extra: &[&str],
) -> Controller {
    let mut args = vec![
        "--lease-namespace",
        "gantry-system",
        "--verify-alb-weights",
        "never",
    ];
    args.extend_from_slice(extra);
    let kubeconfig = api.kubeconfig_via(dir, port);
    let controller = Controller::start_on(&kubeconfig, dir, free_port(), &args, &[]);
    crate::wait_for_port(controller.port, "the controller's endpoints");
    controller
}

/// The Rollout's phase and step.
pub fn phase(api: &FakeApi) -> (String, String) {
    let r = api.get(ROLLOUTS, "shop", "backend").unwrap();
    let s = &r["status"];
    (
        s["phase"].as_str().unwrap_or("").into(),
        s["stepDisplay"].as_str().unwrap_or("").into(),
    )
}

pub fn wait_phase(api: &FakeApi, want: (&str, &str)) {
    wait(
        &format!("Rollout at {want:?}, is at {:?}", phase(api)),
        || {
            let (p, s) = phase(api);
            (p == want.0 && s == want.1).then_some(())
        },
    );
}

/// A new image, as a GitOps sync would apply it.
pub fn release(api: &FakeApi, image: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}});
    api.merge_patch(ROLLOUTS, "shop", "backend", &patch);
}
