//! `/metrics`, `/healthz` and `/readyz` for probes and Prometheus.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::telemetry::Metrics;

/// Why the controller is not ready yet (`None`: ready), for `/readyz`.
#[derive(Clone)]
pub struct Readiness(Arc<Mutex<Option<String>>>);

impl Readiness {
    pub fn new(why_not: &str) -> Readiness {
        Readiness(Arc::new(Mutex::new(Some(why_not.to_string()))))
    }

    pub fn not_ready(&self, why: &str) {
        *self.0.lock().expect("readiness lock") = Some(why.to_string());
    }

    pub fn ready(&self) {
        *self.0.lock().expect("readiness lock") = None;
    }

    pub fn why_not(&self) -> Option<String> {
        self.0.lock().expect("readiness lock").clone()
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    readiness: Readiness,
}

/// Serves on an already bound listener (so a taken port fails at startup)
/// until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Shared>| async move { s.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<Shared>| async move {
                match s.readiness.why_not() {
                    None => (StatusCode::OK, "ready".to_string()),
                    Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                }
            }),
        )
        .with_state(Shared { metrics, readiness });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
