//! `provider.web` end to end: `gantry analysis run` (the controller's own
//! resolution, request and judgement) against a real local HTTP server
//! whose answers the test changes: good, bad and missing values, a POST
//! with a JSON body and a Secret-style header, a slow endpoint, an error
//! status, and templates that cannot work.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use gantry_tests::{analysis_run, write};
use serde_json::{Value, json};

/// The error rate `/rate` reports (`None`: the field is missing).
type Rate = Arc<Mutex<Option<f64>>>;

/// Serves on a loopback port from a thread of its own.
fn serve(rate: Rate) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new()
                .route("/rate", get(report))
                .route("/judge", post(judge))
                .route("/slow", get(slow))
                .route("/broken", get(broken))
                .with_state(rate);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// A JSON answer (axum is built without its JSON feature here).
type Answer = ([(header::HeaderName, &'static str); 1], String);

fn answer(v: Value) -> Answer {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string())
}

async fn report(State(rate): State<Rate>) -> Answer {
    let rate = *rate.lock().unwrap();
    answer(match rate {
        Some(r) => json!({"data": {"errorRate": r, "service": "backend"}}),
        None => json!({"data": {"service": "backend"}}),
    })
}

/// Passes only the exact request the template describes.
async fn judge(headers: HeaderMap, body: Bytes) -> Answer {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let json = headers.get("content-type").and_then(|v| v.to_str().ok());
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let ok = auth == Some("Bearer s3cret")
        && json == Some("application/json")
        && body == json!({"service": "backend", "window": "5m"});
    answer(json!({"verdict": {"ok": ok}}))
}

async fn slow() -> Answer {
    tokio::time::sleep(Duration::from_secs(3)).await;
    answer(json!({"late": true}))
}

async fn broken() -> (StatusCode, &'static str) {
    (StatusCode::INTERNAL_SERVER_ERROR, "upstream down")
}

const RATE: &str = r#"
apiVersion: gantry.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: web-rate}
spec:
  args: [{name: base}]
  metrics:
  - name: error-rate
    successCondition: result < 0.05
    provider:
      web:
        url: "{{args.base}}/rate"
        jsonPath: "{$.data.errorRate}"
"#;

const JUDGE: &str = r#"
apiVersion: gantry.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: web-judge}
spec:
  args: [{name: base}, {name: token}]
  metrics:
  - name: judge
    successCondition: result.ok == true
    provider:
      web:
        method: POST
        url: "{{args.base}}/judge"
        headers: [{key: Authorization, value: "Bearer {{args.token}}"}]
        jsonBody: {service: backend, window: 5m}
        jsonPath: "{$.verdict}"
"#;

#[test]
fn a_json_value_passes_fails_and_is_inconclusive_when_missing() {
    let rate: Rate = Arc::new(Mutex::new(Some(0.01)));
    let addr = serve(rate.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "rate.yaml", RATE);
    let base = format!("base=http://{addr}");
    let base = [base.as_str()];

    let r = analysis_run(&file, &base);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&format!("query:   GET http://{addr}/rate $.data.errorRate")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("value:   0.01"), "{}", r.stdout);

    *rate.lock().unwrap() = Some(0.5);
    let r = analysis_run(&file, &base);
    assert_eq!(r.code, 2, "Failed exits 2: {}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("verdict: Failed"), "{}", r.stdout);

    *rate.lock().unwrap() = None;
    let r = analysis_run(&file, &base);
    assert_eq!(
        r.code, 3,
        "missing is Inconclusive: {}{}",
        r.stdout, r.stderr
    );
    assert!(r.stdout.contains("no value there"), "{}", r.stdout);
}

#[test]
fn a_post_carries_its_json_body_and_secret_header_which_is_never_printed() {
    let addr = serve(Arc::new(Mutex::new(None)));
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "judge.yaml", JUDGE);
    let base = format!("base=http://{addr}");
    let r = analysis_run(&file, &[&base, "token=s3cret"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(r#"value:   {"ok":true}"#), "{}", r.stdout);
    assert!(!r.stdout.contains("s3cret") && !r.stderr.contains("s3cret"));
    // Another token: the server says no.
    assert_eq!(analysis_run(&file, &[&base, "token=wrong"]).code, 2);
}

#[test]
fn a_slow_or_failing_endpoint_is_an_error_naming_it() {
    let addr = serve(Arc::new(Mutex::new(None)));
    let dir = tempfile::tempdir().unwrap();
    let slow = RATE
        .replace("/rate", "/slow")
        .replace("jsonPath: \"{$.data.errorRate}\"", "timeoutSeconds: 1");
    let file = write(dir.path(), "slow.yaml", &slow);
    let base = format!("base=http://{addr}");
    let base = [base.as_str()];
    let started = std::time::Instant::now();
    let r = analysis_run(&file, &base);
    assert_eq!(r.code, 1, "Error exits 1: {}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&format!("http://{addr}/slow did not answer within 1s")),
        "{}",
        r.stdout
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout holds"
    );

    let file = write(dir.path(), "broken.yaml", &RATE.replace("/rate", "/broken"));
    let r = analysis_run(&file, &base);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("answered HTTP 500: upstream down"),
        "{}",
        r.stdout
    );
}

#[test]
fn templates_that_cannot_work_are_refused_with_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let bad = RATE.replace(
        "jsonPath: \"{$.data.errorRate}\"",
        "jsonPath: \"{$.data[}\"\n        body: x\n        method: DELETE",
    );
    let file = write(dir.path(), "bad.yaml", &bad);
    let r = analysis_run(&file, &["base=http://127.0.0.1:9"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    for want in [
        "spec.metrics[0].provider.web.method: expected GET, POST or PUT, got \"DELETE\"",
        "spec.metrics[0].provider.web.jsonPath: \"{$.data[}\" is not a JSONPath",
    ] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
    let both = RATE.replace(
        "      web:",
        "      prometheus: {address: http://p, query: up}\n      web:",
    );
    let file = write(dir.path(), "both.yaml", &both);
    let r = analysis_run(&file, &["base=http://127.0.0.1:9"]);
    assert!(
        r.stderr
            .contains("spec.metrics[0].provider: give one of prometheus, web, cloudWatch or job"),
        "{}",
        r.stderr
    );
}
