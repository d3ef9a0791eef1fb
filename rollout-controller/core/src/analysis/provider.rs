//! Metric providers: what a measurement asks, with the arguments
//! substituted and every field checked (Prometheus, `web` for any HTTP
//! endpoint answering JSON, CloudWatch, and `job`: a Kubernetes Job).
//! Asking is the glue's job.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::{ArgValue, MASK, substitute};
use crate::types::{
    CloudWatchMetric, Header, JobMetric, MetricDataQuery, MetricProvider, PodMetadata,
    PrometheusMetric, WebMetric,
};
use crate::validate::parse_duration;
use k8s_openapi::api::batch::v1::JobSpec;

const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);
/// Argo's default for `web`.
const WEB_TIMEOUT: Duration = Duration::from_secs(10);
/// Argo's default window for `cloudWatch`.
const CLOUDWATCH_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    Prometheus(Prometheus),
    Web(Web),
    CloudWatch(CloudWatch),
    Job(Job),
}

/// A Job to create per measurement, arguments substituted: Successful
/// when it completes, Failed when it fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub metadata: PodMetadata,
    /// A checked `batch/v1` JobSpec.
    pub spec: Value,
}

/// GetMetricData over the last `interval`, arguments substituted.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudWatch {
    pub interval: Duration,
    pub queries: Vec<MetricDataQuery>,
}

#[derive(Clone, PartialEq)]
pub struct Prometheus {
    pub address: String,
    pub query: String,
    pub timeout: Duration,
    pub headers: Vec<(String, String)>,
    pub insecure: bool,
}

#[derive(Clone, PartialEq)]
pub struct Web {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    /// With whether it is JSON (`jsonBody`).
    pub body: Option<(String, bool)>,
    pub timeout: Duration,
    /// A JSONPath (`$.data.value`); `$` is the whole answer.
    pub json_path: String,
    pub insecure: bool,
}

// Header values (and bodies) carry credentials.
fn masked(headers: &[(String, String)]) -> Vec<(&String, &str)> {
    headers.iter().map(|(k, _)| (k, MASK)).collect()
}

impl fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prometheus")
            .field("address", &self.address)
            .field("timeout", &self.timeout)
            .field("headers", &masked(&self.headers))
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Web {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Web")
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .field("headers", &masked(&self.headers))
            .field("json_path", &self.json_path)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// Substitutes arguments into provider fields, each error with its path.
struct Fields<'a> {
    mpath: &'a str,
    args: &'a BTreeMap<String, ArgValue>,
    errors: &'a mut Vec<String>,
}

impl Fields<'_> {
    fn sub(&mut self, field: &str, text: &str) -> String {
        substitute(text, self.args, false).unwrap_or_else(|e| {
            self.errors.push(format!("{}.{field}: {e}", self.mpath));
            String::new()
        })
    }

    /// For status and logs: secret-backed values masked (any error is
    /// reported by `sub` on the same text).
    fn shown(&self, text: &str) -> String {
        substitute(text, self.args, true).unwrap_or_default()
    }

    /// Every string in `value` substituted (or, `shown`, masked).
    fn sub_json(&mut self, field: &str, value: &Value, shown: bool) -> Value {
        match value {
            Value::String(s) if shown => Value::String(self.shown(s)),
            Value::String(s) => Value::String(self.sub(field, s)),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.sub_json(field, v, shown))
                    .collect(),
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.sub_json(&format!("{field}.{k}"), v, shown)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn headers(&mut self, provider: &str, headers: &[Header]) -> Vec<(String, String)> {
        headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let field = format!("provider.{provider}.headers[{i}].value");
                (h.key.clone(), self.sub(&field, &h.value))
            })
            .collect()
    }

    fn error(&mut self, field: &str, what: String) {
        self.errors
            .push(format!("{}.provider.{field}: {what}", self.mpath));
    }

    fn url(&mut self, field: &str, url: &str, example: &str) {
        if url.is_empty() {
            self.error(field, format!("required ({example})"));
        } else if url.contains(super::MASK) {
            // From a Secret not read here (plan, convert): the controller,
            // which reads it, checks it.
        } else if !(url.starts_with("http://") || url.starts_with("https://")) {
            self.error(
                field,
                format!("expected an http:// or https:// URL, got {url:?}"),
            );
        }
    }

    fn timeout(&mut self, field: &str, seconds: Option<i64>, default: Duration) -> Duration {
        match seconds {
            None => default,
            Some(s) if s > 0 => Duration::from_secs(s as u64),
            Some(s) => {
                self.error(field, format!("expected seconds > 0, got {s}"));
                default
            }
        }
    }
}

/// The metric's one provider with its arguments substituted, and what it
/// asks for status and logs; `None` with the problems in `errors`.
pub(super) fn resolve(
    mpath: &str,
    provider: &MetricProvider,
    args: &BTreeMap<String, ArgValue>,
    errors: &mut Vec<String>,
) -> Option<(Provider, String)> {
    let others: Vec<&str> = provider.other.keys().map(String::as_str).collect();
    if !others.is_empty() {
        errors.push(format!(
            "{mpath}.provider: {} is not supported by gantry (prometheus, web, cloudWatch or job)",
            others.join(", ")
        ));
    }
    let mut fields = Fields {
        mpath,
        args,
        errors,
    };
    let given = [
        provider.prometheus.is_some(),
        provider.web.is_some(),
        provider.cloud_watch.is_some(),
        provider.job.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        let many = format!("{mpath}.provider: give one of prometheus, web, cloudWatch or job");
        fields.errors.push(many);
        return None;
    }
    if let Some(p) = &provider.prometheus {
        return prometheus(&mut fields, p);
    }
    if let Some(w) = &provider.web {
        return web(&mut fields, w);
    }
    if let Some(c) = &provider.cloud_watch {
        return cloud_watch(&mut fields, c);
    }
    if let Some(j) = &provider.job {
        return job(&mut fields, j);
    }
    if others.is_empty() {
        let none = format!("{mpath}.provider: required (prometheus, web, cloudWatch or job)");
        fields.errors.push(none);
    }
    None
}

/// A JobSpec as the API server would take it, whose pods do not restart;
/// shown as its first container's image and command.
fn job(f: &mut Fields, j: &JobMetric) -> Option<(Provider, String)> {
    let spec = f.sub_json("provider.job.spec", &j.spec, false);
    let shown = f.sub_json("provider.job.spec", &j.spec, true);
    let parsed: JobSpec = match serde_json::from_value(spec.clone()) {
        Ok(parsed) => parsed,
        Err(e) => {
            f.error("job.spec", format!("not a batch/v1 JobSpec: {e}"));
            return None;
        }
    };
    let pod = parsed.template.spec.unwrap_or_default();
    if pod.containers.is_empty() {
        f.error(
            "job.spec.template.spec.containers",
            "required (what the Job runs)".into(),
        );
    }
    let restart = pod.restart_policy.as_deref().unwrap_or("Always");
    if !matches!(restart, "Never" | "OnFailure") {
        f.error(
            "job.spec.template.spec.restartPolicy",
            format!("must be Never or OnFailure for a Job, got {restart:?}"),
        );
    }
    let first = &shown["template"]["spec"]["containers"][0];
    let words: Vec<&str> = [&first["command"], &first["args"]]
        .into_iter()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let image = first["image"].as_str().unwrap_or_default();
    let display = format!("job: {image} {}", words.join(" "));
    let job = Job {
        metadata: j.metadata.clone(),
        spec,
    };
    Some((Provider::Job(job), display.trim_end().to_string()))
}

fn prometheus(f: &mut Fields, p: &PrometheusMetric) -> Option<(Provider, String)> {
    let address = f.sub("provider.prometheus.address", &p.address);
    let query = f.sub("provider.prometheus.query", &p.query);
    let headers = f.headers("prometheus", &p.headers);
    if p.authentication.is_some() {
        f.error(
            "prometheus.authentication",
            "not supported by gantry (use headers)".into(),
        );
    }
    f.url(
        "prometheus.address",
        &address,
        "Prometheus' URL, e.g. http://prometheus.monitoring:9090",
    );
    if p.query.trim().is_empty() {
        f.error("prometheus.query", "required".into());
    }
    let timeout = f.timeout("prometheus.timeout", p.timeout, PROMETHEUS_TIMEOUT);
    let shown = f.shown(&p.query);
    let prometheus = Prometheus {
        address,
        query,
        timeout,
        headers,
        insecure: p.insecure.unwrap_or(false),
    };
    Some((Provider::Prometheus(prometheus), shown))
}

fn web(f: &mut Fields, w: &WebMetric) -> Option<(Provider, String)> {
    let url = f.sub("provider.web.url", &w.url);
    f.url("web.url", &url, "the endpoint answering JSON");
    let headers = f.headers("web", &w.headers);
    let method = w.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    if !matches!(method.as_str(), "GET" | "POST" | "PUT") {
        f.error(
            "web.method",
            format!("expected GET, POST or PUT, got {method:?}"),
        );
    }
    let body = match (&w.body, &w.json_body) {
        (Some(_), Some(_)) => {
            f.error("web", "give body or jsonBody, not both".into());
            None
        }
        (Some(text), None) => Some((f.sub("provider.web.body", text), false)),
        (None, Some(json)) => {
            let text = serde_json::to_string(json).expect("JSON serializes");
            Some((f.sub("provider.web.jsonBody", &text), true))
        }
        (None, None) => None,
    };
    if body.is_some() && method == "GET" {
        f.error("web.method", "a body needs POST or PUT".into());
    }
    if w.authentication.is_some() {
        f.error(
            "web.authentication",
            "not supported by gantry (use headers)".into(),
        );
    }
    let json_path = json_path(w.json_path.as_deref().unwrap_or("{$}"));
    if let Err(e) = jsonpath_rust::parser::parse_json_path(&json_path) {
        let text = w.json_path.as_deref().unwrap_or_default();
        f.error(
            "web.jsonPath",
            format!("{text:?} is not a JSONPath like {{$.data.value}}: {e}"),
        );
    }
    let timeout = f.timeout("web.timeoutSeconds", w.timeout_seconds, WEB_TIMEOUT);
    let shown = format!("{method} {} {json_path}", f.shown(&w.url));
    let web = Web {
        url,
        method,
        headers,
        body,
        timeout,
        json_path,
        insecure: w.insecure.unwrap_or(false),
    };
    Some((Provider::Web(web), shown))
}

fn cloud_watch(f: &mut Fields, c: &CloudWatchMetric) -> Option<(Provider, String)> {
    let interval = match &c.interval {
        None => CLOUDWATCH_INTERVAL,
        Some(text) => {
            let text = f.sub("provider.cloudWatch.interval", text);
            parse_duration(&IntOrString::String(text)).unwrap_or_else(|e| {
                f.error("cloudWatch.interval", e);
                CLOUDWATCH_INTERVAL
            })
        }
    };
    if c.metric_data_queries.is_empty() {
        f.error(
            "cloudWatch.metricDataQueries",
            "at least one query is required".into(),
        );
    }
    let mut queries = Vec::new();
    let mut shown = Vec::new();
    for (i, q) in c.metric_data_queries.iter().enumerate() {
        let field = format!("cloudWatch.metricDataQueries[{i}]");
        let json = serde_json::to_value(q).expect("a query serializes");
        let substituted = f.sub_json(&format!("provider.{field}"), &json, false);
        let masked = f.sub_json("", &json, true);
        // Strings were replaced by strings: the shape is the same.
        let q: MetricDataQuery = serde_json::from_value(substituted).expect("same shape");
        let masked: MetricDataQuery = serde_json::from_value(masked).expect("same shape");
        check_query(f, &field, &q, &queries);
        shown.push(describe(&masked));
        queries.push(q);
    }
    if !queries.is_empty() && queries.iter().all(|q| q.return_data == Some(false)) {
        f.error(
            "cloudWatch.metricDataQueries",
            "every query has returnData: false: nothing would be judged".into(),
        );
    }
    let text = format!(
        "GetMetricData over {}s: {}",
        interval.as_secs(),
        shown.join("; ")
    );
    Some((Provider::CloudWatch(CloudWatch { interval, queries }), text))
}

/// One query as GetMetricData would check it (`earlier`: the ones before).
fn check_query(f: &mut Fields, field: &str, q: &MetricDataQuery, earlier: &[MetricDataQuery]) {
    let mut chars = q.id.chars();
    let id_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !id_ok {
        f.error(
            &format!("{field}.id"),
            format!(
                "expected a name starting with a lowercase letter (letters, digits, _), got {:?}",
                q.id
            ),
        );
    } else if earlier.iter().any(|e| e.id == q.id) {
        f.error(
            &format!("{field}.id"),
            format!("{:?} is used by another query", q.id),
        );
    }
    match (&q.expression, &q.metric_stat) {
        (Some(_), None) | (None, Some(_)) => {}
        _ => f.error(field, "give exactly one of expression or metricStat".into()),
    }
    if let Some(s) = &q.metric_stat {
        for (name, value) in [
            ("metric.namespace", &s.metric.namespace),
            ("metric.metricName", &s.metric.metric_name),
            ("stat", &s.stat),
        ] {
            if value.is_empty() {
                f.error(&format!("{field}.metricStat.{name}"), "required".into());
            }
        }
        if !(s.period > 0 && (s.period % 60 == 0 || [1, 5, 10, 30].contains(&s.period))) {
            f.error(
                &format!("{field}.metricStat.period"),
                format!(
                    "expected seconds: 1, 5, 10, 30 or a multiple of 60, got {}",
                    s.period
                ),
            );
        }
    }
    if q.period.is_some_and(|p| p <= 0) {
        f.error(&format!("{field}.period"), "expected seconds > 0".into());
    }
}

/// `rate = errors / requests`, `errors = Sum(AWS/ApplicationELB
/// HTTPCode_Target_5XX_Count TargetGroup=…) per 60s`.
fn describe(q: &MetricDataQuery) -> String {
    match (&q.expression, &q.metric_stat) {
        (Some(e), _) => format!("{} = {e}", q.id),
        (None, Some(s)) => {
            let dims: String = s
                .metric
                .dimensions
                .iter()
                .map(|d| format!(" {}={}", d.name, d.value))
                .collect();
            format!(
                "{} = {}({} {}{dims}) per {}s",
                q.id, s.stat, s.metric.namespace, s.metric.metric_name, s.period
            )
        }
        (None, None) => q.id.clone(),
    }
}

/// Argo writes Kubernetes' template form, `{$.data}`; the braces go.
fn json_path(text: &str) -> String {
    let t = text.trim();
    t.strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(t)
        .trim()
        .to_string()
}
