//! Takes measurements for analysis, as the controller and `gantry
//! analysis run` both do: Prometheus instant queries (`prometheus`) and
//! JSON from any HTTP endpoint (`web`), judged by the metric's conditions.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use rollout_core::analysis::{Metric, Provider, QueryValue, Verdict, evaluate};
use rollout_core::types::{AnalysisPhase, Measurement};

mod prometheus;
mod web;

pub use prometheus::QueryError;
pub use web::WebError;

/// One HTTP client per TLS mode, shared by every query.
#[derive(Clone)]
pub struct Client {
    verified: reqwest::Client,
    insecure: reqwest::Client,
}

impl Client {
    pub fn new() -> Result<Client, reqwest::Error> {
        // reqwest is built without a bundled crypto provider; ring is the one
        // kube already links (a no-op when the process has chosen one).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
        };
        Ok(Client {
            verified: builder().build()?,
            insecure: builder().tls_danger_accept_invalid_certs(true).build()?,
        })
    }

    fn http(&self, insecure: bool) -> &reqwest::Client {
        if insecure {
            &self.insecure
        } else {
            &self.verified
        }
    }

    /// Asks the metric's provider once.
    async fn ask(&self, provider: &Provider) -> Result<QueryValue, String> {
        match provider {
            Provider::Prometheus(p) => self.query(p).await.map_err(|e| e.to_string()),
            Provider::Web(w) => self.fetch(w).await.map_err(|e| e.to_string()),
        }
    }
}

/// Queries the metric once and judges the value: the measurement, and the
/// value when there was one.
pub async fn measure(client: &Client, metric: &Metric) -> (Measurement, Option<QueryValue>) {
    let started_at = Timestamp::now().to_string();
    let result = client.ask(&metric.provider).await;
    let finished_at = Timestamp::now().to_string();
    let (verdict, value) = match result {
        Ok(value) => (evaluate(metric, &value), Some(value)),
        Err(e) => (
            Verdict {
                phase: AnalysisPhase::Error,
                message: Some(e),
            },
            None,
        ),
    };
    let measurement = Measurement {
        phase: verdict.phase,
        value: value.as_ref().map(ToString::to_string),
        started_at,
        finished_at,
        message: verdict.message,
    };
    (measurement, value)
}
