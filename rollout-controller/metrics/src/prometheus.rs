//! Instant queries against Prometheus's HTTP API.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use rollout_core::analysis::{Prometheus, QueryValue};
use rollout_core::error_chain::error_chain;

use crate::Client;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("cannot reach Prometheus at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("Prometheus at {address} did not answer within {}s", timeout.as_secs())]
    Timeout { address: String, timeout: Duration },
    #[error("Prometheus rejected the query ({kind}): {message}")]
    Rejected { kind: String, message: String },
    #[error("unexpected answer from Prometheus at {address}: {reason}")]
    Protocol { address: String, reason: String },
}

impl Client {
    /// Runs an instant query and returns its value.
    pub async fn query(&self, p: &Prometheus) -> Result<QueryValue, QueryError> {
        let address = p.address.trim_end_matches('/').to_string();
        let http = self.http(p.insecure);
        let timeout = p.timeout;
        // Prometheus stops evaluating at its own timeout too, so a slow query
        // does not keep running after we gave up on it.
        let form = [
            ("query", p.query.as_str()),
            ("timeout", &format!("{}s", timeout.as_secs())),
        ];
        let mut request = http
            .post(format!("{address}/api/v1/query"))
            .form(&form)
            .timeout(timeout);
        for (key, value) in &p.headers {
            request = request.header(key, value);
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                QueryError::Timeout {
                    address: address.clone(),
                    timeout,
                }
            } else {
                QueryError::Unreachable {
                    address: address.clone(),
                    reason: error_chain(&e),
                }
            }
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let body = response.bytes().await.map_err(failed)?;
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| QueryError::Protocol {
            address: address.clone(),
            reason: format!(
                "HTTP {status}, body is not Prometheus JSON ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        })?;
        if answer.status != "success" {
            return Err(QueryError::Rejected {
                kind: answer.error_type.unwrap_or_else(|| status.to_string()),
                message: answer.error.unwrap_or_default(),
            });
        }
        let data = answer.data.ok_or_else(|| QueryError::Protocol {
            address: address.clone(),
            reason: "no data in a successful answer".into(),
        })?;
        parse_result(&data.result_type, &data.result).map_err(|reason| QueryError::Protocol {
            address: address.clone(),
            reason,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status: String,
    data: Option<Data>,
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Value,
}

/// `[<time>, "<value>"]` → the value (Prometheus sends numbers as strings,
/// with `NaN`, `+Inf` and `-Inf` spelled out).
fn sample(v: &Value) -> Result<f64, String> {
    let text = v
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("sample {v} is not [time, \"value\"]"))?;
    text.parse()
        .map_err(|_| format!("sample value {text:?} is not a number"))
}

fn parse_result(kind: &str, result: &Value) -> Result<QueryValue, String> {
    let series = || {
        result
            .as_array()
            .ok_or_else(|| format!("{kind} result is not a list"))
    };
    match kind {
        "scalar" => sample(result).map(QueryValue::Scalar),
        "string" => result
            .get(1)
            .and_then(Value::as_str)
            .map(|s| QueryValue::String(s.to_string()))
            .ok_or_else(|| "string result is not [time, \"value\"]".into()),
        "vector" => series()?
            .iter()
            .map(|s| sample(&s["value"]))
            .collect::<Result<_, _>>()
            .map(QueryValue::Vector),
        "matrix" => series()?
            .iter()
            .map(|s| {
                s["values"]
                    .as_array()
                    .ok_or("matrix series without values")?
                    .iter()
                    .map(sample)
                    .collect::<Result<Vec<f64>, String>>()
            })
            .collect::<Result<_, _>>()
            .map(QueryValue::Matrix),
        other => Err(format!("unknown resultType {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_types() {
        let v = json!([{"metric": {"a": "b"}, "value": [1.5, "0.25"]}, {"metric": {}, "value": [1.5, "NaN"]}]);
        match parse_result("vector", &v).unwrap() {
            QueryValue::Vector(x) => {
                assert_eq!(x[0], 0.25);
                assert!(x[1].is_nan());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_result("scalar", &json!([1.5, "+Inf"])).unwrap(),
            QueryValue::Scalar(f64::INFINITY)
        );
        assert_eq!(
            parse_result("matrix", &json!([{"values": [[1, "1"], [2, "-Inf"]]}])).unwrap(),
            QueryValue::Matrix(vec![vec![1.0, f64::NEG_INFINITY]])
        );
        assert_eq!(
            parse_result("string", &json!([1, "up"])).unwrap(),
            QueryValue::String("up".into())
        );
        assert!(
            parse_result("vector", &json!([{"value": [1, "x"]}]))
                .unwrap_err()
                .contains("\"x\" is not a number")
        );
        assert!(parse_result("histogram", &json!([])).is_err());
    }
}
