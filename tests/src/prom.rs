//! A real Prometheus on loopback: scraping a test exporter whose error
//! ratio the test sets, and holding backfilled history for exact values.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{free_port, wait_for_port};

/// Backfilled history starts here (2023-11-14T22:13:20Z).
pub const T0: i64 = 1_700_000_000;

/// `/metrics` with `http_requests_total{code}` counters; every scrape adds
/// 100 requests of which `ratio` are errors.
pub struct Exporter {
    pub port: u16,
    ratio: Arc<Mutex<f64>>,
    _runtime: tokio::runtime::Runtime,
}

impl Exporter {
    pub fn start(ratio: f64) -> Exporter {
        use axum::extract::State;
        #[derive(Default)]
        struct Counts {
            ok: f64,
            errors: f64,
        }
        type Shared = (Arc<Mutex<f64>>, Arc<Mutex<Counts>>);
        async fn metrics(State((ratio, counts)): State<Shared>) -> String {
            let ratio = *ratio.lock().unwrap();
            let mut c = counts.lock().unwrap();
            c.errors += 100.0 * ratio;
            c.ok += 100.0 * (1.0 - ratio);
            format!(
                "# TYPE http_requests_total counter\n\
                 http_requests_total{{code=\"200\"}} {}\n\
                 http_requests_total{{code=\"500\"}} {}\n",
                c.ok, c.errors
            )
        }
        let ratio = Arc::new(Mutex::new(ratio));
        let state: Shared = (ratio.clone(), Arc::default());
        let app = axum::Router::new()
            .route("/metrics", axum::routing::get(metrics))
            .with_state(state);
        let (port, runtime) = crate::serve(app, "exporter");
        Exporter {
            port,
            ratio,
            _runtime: runtime,
        }
    }

    pub fn set_ratio(&self, ratio: f64) {
        *self.ratio.lock().unwrap() = ratio;
    }
}

pub struct Prometheus {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `exporter` every second; `backfill` (OpenMetrics text) is
    /// written into the TSDB with promtool before it starts.
    pub fn start(exporter: Option<&Exporter>, backfill: Option<&str>) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let targets = exporter
            .map(|e| format!("[\"127.0.0.1:{}\"]", e.port))
            .unwrap_or_else(|| "[]".into());
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n- job_name: app\n  static_configs: [{{targets: {targets}}}]\n"
            ),
        )
        .unwrap();
        if let Some(text) = backfill {
            let file = dir.path().join("history.om");
            std::fs::write(&file, text).unwrap();
            promtool_backfill(&file, &data);
        }
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .expect("prometheus (run tests/setup)");
        let p = Prometheus {
            port,
            child,
            _dir: dir,
        };
        wait_for_port(port, "prometheus");
        p.wait_ready();
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/-/ready", self.url());
        while Instant::now() < deadline {
            if blocking_get(&url) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus not ready after 30 s");
    }

    /// Waits until `query` returns a number (scrapes have landed).
    pub fn wait_for(&self, query: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let body = post_query(&self.url(), query).unwrap_or_default();
            if body.contains("\"value\"") && !body.contains("NaN") {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("no data for {query} after 30 s");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn promtool_backfill(file: &Path, data: &Path) {
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(file)
        .arg(data)
        .output()
        .expect("promtool (run tests/setup)");
    assert!(
        out.status.success(),
        "promtool backfill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Status of a GET, None when the connection fails.
fn blocking_get(url: &str) -> Option<u16> {
    block_on(async { Some(reqwest::get(url).await.ok()?.status().as_u16()) })
}

/// The raw answer to an instant query.
fn post_query(base: &str, query: &str) -> Option<String> {
    block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{base}/api/v1/query"))
            .form(&[("query", query)])
            .send()
            .await
            .ok()?;
        r.text().await.ok()
    })
}

/// OpenMetrics for a gauge `name{labels}` with one sample every 15 s from
/// `from` (seconds after T0) for `minutes`; `value` may be `NaN`.
pub fn gauge_series(name: &str, labels: &str, from: i64, minutes: i64, value: &str) -> String {
    (0..minutes * 4)
        .map(|i| format!("{name}{{{labels}}} {value} {}\n", T0 + from + i * 15))
        .collect()
}

/// An HTTP front for Prometheus that answers late, or only to a bearer token.
pub struct Front {
    pub port: u16,
    /// Authorization headers received.
    pub seen: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Front {
    pub fn start(upstream: &str, delay: Duration, token: Option<&str>) -> Front {
        use axum::extract::{Request, State};
        use axum::response::{IntoResponse, Response};
        #[derive(Clone)]
        struct Shared {
            upstream: String,
            delay: Duration,
            token: Option<String>,
            seen: Arc<Mutex<Vec<String>>>,
            client: reqwest::Client,
        }
        async fn handle(State(s): State<Shared>, req: Request) -> Response {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            s.seen.lock().unwrap().push(auth.clone());
            if let Some(t) = &s.token
                && auth != format!("Bearer {t}")
            {
                return (axum::http::StatusCode::UNAUTHORIZED, "unauthorized").into_response();
            }
            tokio::time::sleep(s.delay).await;
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let content_type = req.headers().get("content-type").cloned();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap();
            let mut up = s.client.post(format!("{}{path}", s.upstream)).body(body);
            if let Some(ct) = content_type {
                up = up.header("content-type", ct);
            }
            let r = up.send().await.unwrap();
            let status = r.status().as_u16();
            let bytes = r.bytes().await.unwrap();
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(bytes))
                .unwrap()
        }
        // reqwest needs the process's crypto provider before a client exists.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Shared {
            upstream: upstream.to_string(),
            delay,
            token: token.map(String::from),
            seen: seen.clone(),
            client: reqwest::Client::new(),
        };
        let app = axum::Router::new().fallback(handle).with_state(state);
        let (port, runtime) = crate::serve(app, "prometheus front");
        Front {
            port,
            seen,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
