//! One notification to one destination: the request (body by kind, the
//! destination's headers, an HMAC-SHA256 signature when it has a key), sent
//! with retries and backoff on 5xx, 429 and connection errors. URLs and
//! keys come from the Secret and are never logged: a failure names the
//! destination, the trigger and the HTTP status only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable as _};
use hmac::{Hmac, Mac as _};
use rollout_core::notify::config::{Destination, Kind, resolve};
use rollout_core::notify::{Occurrence, message};
use sha2::Sha256;

use crate::telemetry::Metrics;

/// Each attempt's limit; a slow receiver only holds its own delivery.
const TIMEOUT: Duration = Duration::from_secs(10);
pub const SIGNATURE_HEADER: &str = "X-Gantry-Signature-256";

pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .user_agent(concat!(
            "gantry-rollout-controller/",
            env!("CARGO_PKG_VERSION")
        ))
        .timeout(TIMEOUT)
        .build()?)
}

pub struct Request {
    destination: String,
    trigger: &'static str,
    id: String,
    /// Secret: never logged.
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The request for `occurrence` to `destination`, its settings resolved
/// from the Secret; or what is missing.
pub fn request(
    destination: &Destination,
    occurrence: &Occurrence,
    secret: &BTreeMap<String, String>,
    secret_name: &str,
) -> Result<Request, String> {
    let body = serde_json::to_vec(&message::body(&destination.kind, occurrence))
        .map_err(|e| e.to_string())?;
    let mut headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        (
            "X-Gantry-Event".to_string(),
            occurrence.trigger.name().to_string(),
        ),
        ("X-Gantry-Delivery".to_string(), occurrence.key.clone()),
    ];
    let url = match &destination.kind {
        Kind::Webhook(hook) => {
            for (name, value) in &hook.headers {
                let value = resolve(value, secret, secret_name)
                    .map_err(|e| format!("webhook.headers.{name}: {e}"))?;
                headers.push((name.clone(), value));
            }
            if let Some(key) = &hook.hmac_secret {
                let key = resolve(key, secret, secret_name)
                    .map_err(|e| format!("webhook.hmacSecret: {e}"))?;
                headers.push((
                    SIGNATURE_HEADER.to_string(),
                    signature(key.as_bytes(), &body),
                ));
            }
            resolve(&hook.url, secret, secret_name).map_err(|e| format!("webhook.url: {e}"))?
        }
        Kind::Slack(u) | Kind::Teams(u) | Kind::GoogleChat(u) => {
            resolve(&u.url, secret, secret_name).map_err(|e| format!("url: {e}"))?
        }
    };
    Ok(Request {
        destination: destination.name.clone(),
        trigger: occurrence.trigger.name(),
        id: occurrence.key.clone(),
        url,
        headers,
        body,
    })
}

/// `sha256=<hex>` of the body under `key`, as GitHub signs its webhooks.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Why an attempt failed, without the URL.
struct Failure {
    retry: bool,
    what: String,
}

/// Sends `request`, retrying what may succeed later (≈ 1, 2, 4, 8, 16 s,
/// with jitter); counts the outcome.
pub async fn deliver(http: &reqwest::Client, metrics: &Metrics, request: Request, seen: Instant) {
    let attempt = || async {
        let mut post = http.post(&request.url).body(request.body.clone());
        for (name, value) in &request.headers {
            post = post.header(name, value);
        }
        let answer = post.send().await.map_err(|e| Failure {
            retry: true,
            what: e.without_url().to_string(),
        })?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        Err(Failure {
            retry: status.is_server_error() || status.as_u16() == 429,
            what: format!("HTTP {status}"),
        })
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(5)
        .with_jitter();
    let result = attempt
        .retry(backoff)
        .when(|f: &Failure| f.retry)
        .notify(|f: &Failure, after| {
            tracing::info!(destination = %request.destination, trigger = request.trigger,
                id = %request.id, "notification not accepted ({}): again in {after:?}", f.what);
        })
        .await;
    match result {
        Ok(()) => metrics.notification_sent(&request.destination, request.trigger, seen.elapsed()),
        Err(f) => {
            tracing::warn!(destination = %request.destination, trigger = request.trigger,
                id = %request.id, "notification dropped: {}", f.what);
            metrics.notification_dropped(&request.destination, "failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
