//! Every request goes through here: sent with the current authorization,
//! answered challenges, transient failures retried with backoff, and the
//! registry's errors read.

use std::time::Duration;

use backon::Retryable;
use reqwest::header::{AUTHORIZATION, HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode, Url};

use crate::oci::error::RegistryError;

use super::{Client, header_str};

impl Client {
    /// One request, retried while it fails transiently.
    pub(super) async fn call(
        &self,
        op: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        self.retrying(op, || self.send(op, &make)).await
    }

    /// `Some` for 200, `None` for 404, an error for anything else.
    pub(super) async fn found(
        &self,
        op: &str,
        resp: Response,
    ) -> Result<Option<Response>, RegistryError> {
        match resp.status() {
            StatusCode::OK => Ok(Some(resp)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(op, resp).await),
        }
    }

    pub(super) async fn retrying<T, F, Fut>(&self, op: &str, f: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        f.retry(self.backoff)
            .when(RegistryError::is_transient)
            .adjust(|e, planned| match e {
                RegistryError::Status {
                    retry_after: Some(wait),
                    ..
                } => Some((*wait).min(Duration::from_secs(60))),
                _ => planned,
            })
            .notify(|e, wait| tracing::warn!("{e}; retrying {op} in {wait:.1?}"))
            .await
    }

    /// Sends one request, answering an auth challenge once. Failures that
    /// should be retried come back as errors; other answers as responses.
    pub(super) async fn send(
        &self,
        op: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut challenged = false;
        loop {
            let mut request = make();
            if let Some(auth) = self.authorization.lock().expect("lock").clone() {
                request = request.header(AUTHORIZATION, auth.expose());
            }
            let resp = request.send().await.map_err(|e| self.transport(op, e))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                if challenged {
                    let detail = self.status_error(op, resp).await.to_string();
                    return Err(RegistryError::Unauthorized {
                        op: op.to_owned(),
                        host: self.repo.host.clone(),
                        detail: detail.split_once(": ").map(|(_, m)| m.to_owned()),
                    });
                }
                challenged = true;
                self.authenticate(op, resp.headers()).await?;
                continue;
            }
            if status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
            {
                return Err(self.status_error(op, resp).await);
            }
            return Ok(resp);
        }
    }

    pub(super) fn location(&self, op: &str, headers: &HeaderMap) -> Result<Url, RegistryError> {
        let location = header_str(headers, LOCATION.as_str()).ok_or_else(|| {
            RegistryError::Protocol(format!("{op}: the registry sent no upload location"))
        })?;
        self.base
            .join(location)
            .map_err(|e| RegistryError::Protocol(format!("{op}: bad upload location: {e}")))
    }

    pub(super) fn transport(&self, op: &str, e: reqwest::Error) -> RegistryError {
        // The error's Display includes the URL; ours never carry credentials.
        RegistryError::Transport {
            op: op.to_owned(),
            host: self.repo.host.clone(),
            detail: rollout_core::error_chain::error_chain(&e),
        }
    }

    pub(super) async fn status_error(&self, op: &str, resp: Response) -> RegistryError {
        let status = resp.status();
        let retry_after = header_str(resp.headers(), RETRY_AFTER.as_str())
            .and_then(|s| s.trim().parse().ok())
            .map(Duration::from_secs);
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<ErrorBody>,
        }
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            code: Option<String>,
            message: Option<String>,
        }
        let body = resp.bytes().await.unwrap_or_default();
        let first = serde_json::from_slice::<Errors>(&body)
            .ok()
            .and_then(|e| e.errors.into_iter().next());
        let (code, message) = match first {
            Some(e) => (e.code, e.message),
            None => (None, None),
        };
        RegistryError::Status {
            op: op.to_owned(),
            host: self.repo.host.clone(),
            status,
            message: match (&code, message) {
                (Some(c), Some(m)) => Some(format!("{c}: {m}")),
                (c, m) => m.or(c.clone()),
            },
            code,
            retry_after,
        }
    }
}
