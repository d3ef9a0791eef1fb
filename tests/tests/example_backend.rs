//! The example backend (examples/backend, what release.yml ships) serves
//! the endpoints its manifests rely on: /healthz for liveness and startup,
//! /readyz for readiness and the ALB health check (failing while PostgreSQL
//! is unreachable), /metrics with the series the
//! AnalysisTemplate queries; and it shuts down cleanly on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gantry_tests::{free_port, http_get, repo, wait_for_port, which};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(port: u16) -> Server {
    let node = which("node").expect("node is not installed: run tests/setup");
    let dir = repo().join("examples/backend");
    assert!(
        dir.join("node_modules").is_dir(),
        "examples/backend has no node_modules: run tests/setup"
    );
    // Nothing listens on the database and cache ports.
    let (db, cache) = (free_port(), free_port());
    let child = Command::new(node)
        .arg("server.js")
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("DATABASE_URL", format!("postgres://app@127.0.0.1:{db}/app"))
        .env("REDIS_URL", format!("redis://127.0.0.1:{cache}"))
        .env("APP_VERSION", "1.5.0")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the backend");
    wait_for_port(port, "the example backend");
    Server(child)
}

#[test]
fn health_readiness_metrics_and_draining() {
    let port = free_port();
    let mut server = start(port);

    assert_eq!(http_get(port, "/healthz"), (200, "ok".into()));
    let (code, body) = http_get(port, "/readyz");
    assert_eq!(code, 503, "not ready without PostgreSQL: {body}");
    assert!(body.contains("ECONNREFUSED"), "{body}");
    assert_eq!(
        http_get(port, "/api/version"),
        (200, r#"{"version":"1.5.0"}"#.into())
    );
    let (code, body) = http_get(port, "/api/users");
    assert_eq!(code, 503, "{body}");

    let (code, metrics) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    for want in [
        r#"http_requests_total{method="GET",route="/api/users",code="503"} 1"#,
        r#"http_requests_total{method="GET",route="/api/version",code="200"} 1"#,
        r#"http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/api/users"} 1"#,
    ] {
        assert!(metrics.contains(want), "missing {want} in\n{metrics}");
    }
    assert!(
        !metrics.contains(r#"route="/healthz""#),
        "probes stay out of the request metrics"
    );
    gantry_tests::sigterm(&server.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the backend did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
