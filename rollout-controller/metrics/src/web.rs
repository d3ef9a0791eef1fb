//! `provider.web`: one HTTP request, a JSON answer, the part `jsonPath`
//! selects (one match is the value itself, several a list, none null).

use std::time::Duration;

use jsonpath_rust::JsonPath;
use serde_json::Value;

use rollout_core::analysis::{QueryValue, Web};
use rollout_core::error_chain::error_chain;

use crate::Client;

/// The answer shown in a message, at most this long.
const SHOWN: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} did not answer within {}s", timeout.as_secs())]
    Timeout { url: String, timeout: Duration },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} did not answer JSON ({reason}): {body}")]
    NotJson {
        url: String,
        reason: String,
        body: String,
    },
    #[error("jsonPath {path} failed on the answer of {url}: {reason}")]
    Path {
        url: String,
        path: String,
        reason: String,
    },
}

impl Client {
    /// Sends the request and returns what `jsonPath` selects.
    pub(crate) async fn fetch(&self, w: &Web) -> Result<QueryValue, WebError> {
        let url = w.url.clone();
        let method =
            reqwest::Method::from_bytes(w.method.as_bytes()).expect("validated: GET, POST or PUT");
        let mut request = self
            .http(w.insecure)
            .request(method, &w.url)
            .timeout(w.timeout)
            .header("Accept", "application/json");
        for (key, value) in &w.headers {
            request = request.header(key, value);
        }
        if let Some((body, json)) = &w.body {
            if *json {
                request = request.header("Content-Type", "application/json");
            }
            request = request.body(body.clone());
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                WebError::Timeout {
                    url: url.clone(),
                    timeout: w.timeout,
                }
            } else {
                WebError::Unreachable {
                    url: url.clone(),
                    reason: error_chain(&e),
                }
            }
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(failed)?;
        let shown = || {
            let text = String::from_utf8_lossy(&bytes);
            text.chars().take(SHOWN).collect::<String>()
        };
        if !status.is_success() {
            return Err(WebError::Status {
                url,
                status: status.as_u16(),
                body: shown(),
            });
        }
        let answer: Value = serde_json::from_slice(&bytes).map_err(|e| WebError::NotJson {
            url: url.clone(),
            reason: e.to_string(),
            body: shown(),
        })?;
        select(&answer, &w.json_path)
            .map(QueryValue::Json)
            .map_err(|reason| WebError::Path {
                url,
                path: w.json_path.clone(),
                reason,
            })
    }
}

/// What `path` selects in `answer`: the one match, a list of several,
/// null for none.
fn select(answer: &Value, path: &str) -> Result<Value, String> {
    let found = answer.query(path).map_err(|e| e.to_string())?;
    Ok(match found.as_slice() {
        [] => Value::Null,
        [one] => (*one).clone(),
        many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_match_is_the_value_several_a_list_none_null() {
        let answer = json!({"data": {"ok": true, "rates": [0.1, 0.2]}});
        assert_eq!(select(&answer, "$.data.ok").unwrap(), json!(true));
        assert_eq!(
            select(&answer, "$.data.rates[*]").unwrap(),
            json!([0.1, 0.2])
        );
        assert_eq!(select(&answer, "$.data.missing").unwrap(), Value::Null);
        assert_eq!(select(&answer, "$").unwrap(), answer);
    }
}
