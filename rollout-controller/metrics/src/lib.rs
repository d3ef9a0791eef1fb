//! Takes measurements for analysis, as the controller and `gantry
//! analysis run` both do: Prometheus instant queries (`prometheus`), JSON
//! from any HTTP endpoint (`web`) and CloudWatch's GetMetricData
//! (`cloudwatch`), judged by the metric's conditions. (`job` metrics are
//! Kubernetes Jobs: the controller's own.)

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use rollout_core::analysis::{Metric, Provider, QueryValue, Verdict, evaluate};
use rollout_core::types::{AnalysisPhase, Measurement};

mod cloudwatch;
mod prometheus;
mod web;

pub use cloudwatch::CloudWatchError;
pub use prometheus::QueryError;
pub use web::WebError;

/// One HTTP client per TLS mode, shared by every query; the CloudWatch
/// client is made on first use, so nothing asks AWS (not even for the
/// region) until a metric does.
#[derive(Clone)]
pub struct Client {
    verified: reqwest::Client,
    insecure: reqwest::Client,
    cloudwatch: Arc<tokio::sync::OnceCell<aws_sdk_cloudwatch::Client>>,
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
            cloudwatch: Arc::default(),
        })
    }

    /// CloudWatch on the standard credential chain (IRSA in a cluster);
    /// `AWS_ENDPOINT_URL[_CLOUDWATCH]` overrides the endpoint.
    async fn cloudwatch(&self) -> &aws_sdk_cloudwatch::Client {
        self.cloudwatch
            .get_or_init(|| async {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(aws_http_client())
                    .load()
                    .await;
                aws_sdk_cloudwatch::Client::new(&config)
            })
            .await
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
            Provider::CloudWatch(c) => self.metric_data(c).await.map_err(|e| e.to_string()),
            Provider::Job(_) => Err(
                "a job metric runs as a Kubernetes Job, which the controller creates in the cluster; it cannot be measured from here".into(),
            ),
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

/// The AWS SDKs' HTTPS client on ring, the TLS provider kube already links
/// (the SDK's default would build aws-lc-rs, a C build of minutes).
pub fn aws_http_client() -> aws_sdk_cloudwatch::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}
