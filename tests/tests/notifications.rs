//! Notifications from the `rollout-controller` process on the fake API
//! server to a real HTTP receiver on loopback: webhook bodies signed with
//! HMAC-SHA256 and Slack Block Kit messages, as the Rollout moves; a 500
//! retried; nothing sent twice across a restart; secrets never logged; a
//! receiver that does not answer neither holds the rollout back nor grows
//! the queue past its capacity (the rest dropped and counted).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use gantry_tests::controller::Controller;
use gantry_tests::fixtures::no_alb_timing;
use gantry_tests::kube_fake::{self, FakeApi};
use gantry_tests::{free_port, http_get, serve};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;

const ROLLOUTS: &str = "apis/gantry.dev/v1alpha1/rollouts";
const HMAC_KEY: &str = "hmac-key-never-logged";
const SLACK_PATH: &str = "/slack/T0000/B0000/token-never-logged";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    at: Timestamp,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Behaviour {
    got: Mutex<Vec<Received>>,
    answered: Mutex<usize>,
    /// Answer 500 to this many requests first.
    fail: Mutex<usize>,
}

/// An HTTP receiver on loopback; `hold` keeps every answer back until
/// set to false.
struct Receiver {
    port: u16,
    state: Arc<(Behaviour, watch::Sender<bool>)>,
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
    fn start(fail: usize, hold: bool) -> Receiver {
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

    fn got(&self) -> Vec<Received> {
        self.state.0.got.lock().unwrap().clone()
    }

    fn answered(&self) -> usize {
        *self.state.0.answered.lock().unwrap()
    }

    /// The requests with `event` (X-Gantry-Event) to `path`.
    fn events(&self, path: &str, event: &str) -> Vec<Received> {
        self.got()
            .into_iter()
            .filter(|r| r.path == path && r.header("x-gantry-event") == event)
            .collect()
    }

    fn wait_for(&self, path: &str, event: &str) -> Received {
        wait(
            &format!("{event} at {path}: got {:?}", self.summary()),
            || self.events(path, event).last().cloned(),
        )
    }

    fn summary(&self) -> Vec<(String, String)> {
        self.got()
            .iter()
            .map(|r| (r.path.clone(), r.header("x-gantry-delivery").to_string()))
            .collect()
    }
}

fn wait<T>(what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = done() {
            return t;
        }
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The destinations, the Secret, and `backend` with its Services and Ingress.
fn cluster(receiver: &Receiver, audit_triggers: &str, annotations: Value) -> FakeApi {
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
        "metadata": {"name": "backend", "namespace": "shop", "annotations": annotations,
                     // The fake cannot add the first finalizer (a JSON patch to a
                     // missing list), so it is there from the start.
                     "finalizers": ["gantry.dev/rollout-cleanup"]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "backend"}},
            "template": {"metadata": {"labels": {"app": "backend"}},
                         "spec": {"containers": [{"name": "api", "image": "shop/backend:1.0.0"}]}},
            "strategy": {"canary": {"canaryService": "backend-canary", "stableService": "backend",
                "trafficRouting": {"alb": {"ingress": "backend", "servicePort": 80, "targetHealth": no_alb_timing()}},
                "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}}}
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

fn controller(api: &FakeApi, dir: &std::path::Path, extra: &[&str]) -> Controller {
    let mut args = vec![
        "--lease-namespace",
        "gantry-system",
        "--verify-alb-weights",
        "never",
    ];
    args.extend_from_slice(extra);
    let controller = Controller::start(api, dir, free_port(), &args);
    gantry_tests::wait_for_port(controller.port, "the controller's endpoints");
    controller
}

fn phase(api: &FakeApi) -> (String, String) {
    let r = api.get(ROLLOUTS, "shop", "backend").unwrap();
    let s = &r["status"];
    (
        s["phase"].as_str().unwrap_or("").into(),
        s["stepDisplay"].as_str().unwrap_or("").into(),
    )
}

fn wait_phase(api: &FakeApi, want: (&str, &str)) {
    wait(
        &format!("Rollout at {want:?}, is at {:?}", phase(api)),
        || {
            let (p, s) = phase(api);
            (p == want.0 && s == want.1).then_some(())
        },
    );
}

fn release(api: &FakeApi, image: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}});
    api.merge_patch(ROLLOUTS, "shop", "backend", &patch);
}

fn verify_signature(r: &Received) {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(HMAC_KEY.as_bytes()).unwrap();
    mac.update(&r.body);
    let hex = r
        .header("x-gantry-signature-256")
        .strip_prefix("sha256=")
        .expect("signed");
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    mac.verify_slice(&bytes)
        .expect("the signature matches the body");
}

#[test]
fn notifications_reach_the_receivers_once_signed_and_retried() {
    let receiver = Receiver::start(1, false);
    let api = cluster(
        &receiver,
        "[rollout-started, paused, completed]",
        json!({"notifications.gantry.dev/subscribe.aborted.chat": "",
               "notifications.gantry.dev/subscribe.paused.chat": ""}),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut first = controller(&api, dir.path(), &[]);

    // The first deploy completes; the receiver's first answer is a 500.
    let attempts = wait("a second attempt after the 500", || {
        let attempts = receiver.events("/audit", "completed");
        (attempts.len() >= 2).then_some(attempts)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        receiver.events("/audit", "completed").len(),
        2,
        "retried once, then accepted"
    );
    let completed = attempts[1].clone();
    assert_eq!(attempts[0].body, attempts[1].body, "the same message again");
    let body = completed.json();
    assert_eq!(body["rollout"], "backend");
    assert_eq!(body["namespace"], "shop");
    assert_eq!(body["images"], json!(["shop/backend:1.0.0"]));
    assert_eq!(completed.header("x-team"), "payments");
    assert_eq!(completed.header("content-type"), "application/json");
    verify_signature(&completed);

    release(&api, "shop/backend:1.1.0");
    wait_phase(&api, ("Paused", "1/4"));
    let started = receiver.wait_for("/audit", "rollout-started");
    let paused = receiver.wait_for("/audit", "paused");
    for r in [&started, &paused] {
        verify_signature(r);
        assert_eq!(r.json()["images"], json!(["shop/backend:1.1.0"]));
    }
    assert_eq!(paused.json()["step"], "1/4");
    assert_eq!(paused.json()["canaryWeight"], 20);
    assert!(
        paused.json()["summary"]
            .as_str()
            .unwrap()
            .starts_with("paused at step 2 of 4: pause until promoted")
    );
    let slack = receiver.wait_for(SLACK_PATH, "paused").json();
    assert_eq!(slack["blocks"][0]["type"], "header");
    assert_eq!(
        slack["blocks"][0]["text"]["text"],
        ":double_vertical_bar: Rollout shop/backend: paused"
    );
    assert_eq!(
        slack["blocks"][2]["fields"][1]["text"],
        "*Canary weight*\n20%"
    );
    assert!(
        receiver.events("/audit", "step-completed").is_empty(),
        "not subscribed"
    );

    // `gantry rollout abort`'s patch.
    api.patch_status(
        ROLLOUTS,
        "shop",
        "backend",
        &json!({"status": {"abort": true}}),
    );
    let aborted = receiver.wait_for(SLACK_PATH, "aborted").json();
    assert!(
        aborted["text"]
            .as_str()
            .unwrap()
            .contains("aborted: all traffic back on stable"),
        "{aborted}"
    );
    assert!(
        receiver.events("/audit", "aborted").is_empty(),
        "audit does not subscribe to aborts"
    );
    let recorded = api.get(ROLLOUTS, "shop", "backend").unwrap()["status"]["notified"].clone();
    let recorded: Vec<&str> = recorded
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let kinds: Vec<&str> = recorded
        .iter()
        .map(|k| k.split('/').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "rollout-started",
            "step-completed",
            "paused",
            "aborted",
            "degraded"
        ],
        "{recorded:?}"
    );

    // Latency: from the reconcile that saw each occurrence to the receiver.
    let mut latencies: Vec<f64> = receiver
        .got()
        .iter()
        .filter(|r| r.path == "/audit")
        .map(|r| {
            let seen: Timestamp = r.json()["time"].as_str().unwrap().parse().unwrap();
            r.at.duration_since(seen).as_secs_f64() * 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "notification latency (ms, event seen → receiver, incl. one retry after 1 s): {latencies:?}"
    );

    // A new controller process sends nothing again.
    let before = receiver.got().len();
    first.terminate();
    let log: String = first.log().join("\n");
    let second = controller(&api, dir.path(), &[]);
    wait("the new leader reconciling", || {
        let (_, metrics) = http_get(second.port, "/metrics");
        metrics
            .contains("reconcile_duration_seconds_count")
            .then_some(())
            .filter(|_| !metrics.contains("reconcile_duration_seconds_count 0"))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        receiver.got().len(),
        before,
        "sent again after a restart: {:?}",
        receiver.summary()
    );
    let log = log + &second.log().join("\n");
    for secret in [HMAC_KEY, "token-never-logged"] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}

#[test]
fn a_receiver_that_does_not_answer_holds_nothing_back() {
    let receiver = Receiver::start(0, true);
    let api = cluster(
        &receiver,
        "[rollout-started, step-completed, paused, completed]",
        json!({}),
    );
    let dir = tempfile::tempdir().unwrap();
    let controller = controller(&api, dir.path(), &["--notifications-capacity", "1"]);
    receiver.wait_for("/audit", "completed");
    release(&api, "shop/backend:1.1.0");
    wait_phase(&api, ("Paused", "1/4"));
    assert_eq!(
        receiver.answered(),
        0,
        "the canary reached its pause while the receiver held every answer"
    );
    let dropped = wait("the dropped notifications counted", || {
        let (_, metrics) = http_get(controller.port, "/metrics");
        metrics
            .lines()
            .find(|l| l.starts_with("gantry_rollout_controller_notifications_dropped_total{destination=\"audit\",reason=\"queue_full\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u32>().ok())
            .filter(|n| *n == 3)
    });
    assert_eq!(
        dropped, 3,
        "rollout-started, step-completed/1 and paused: one pending is the capacity"
    );
    receiver.state.1.send_replace(false);
    wait("the held delivery answered and counted", || {
        let (_, metrics) = http_get(controller.port, "/metrics");
        metrics
            .contains("gantry_rollout_controller_notifications_sent_total{destination=\"audit\",trigger=\"completed\"} 1")
            .then_some(())
    });
}
