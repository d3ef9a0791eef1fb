//! Analysis, the pure part: AnalysisTemplates resolved into metrics,
//! measurements judged by their conditions, metric and run phases assessed
//! with Argo's limits, and when the next measurement is due.
//!
//! Taking a measurement (a Prometheus query) is the glue's job; everything
//! here is a function of its inputs, so the controller, `gantry analysis
//! run` and the tests all judge a value the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use regex::Regex;

use crate::world::Observed;

mod provider;
pub use provider::{CloudWatch, Job, Prometheus, Provider, Web};

use crate::types::{
    AnalysisArg, AnalysisPhase, AnalysisRunStatus, AnalysisTemplateRef, AnalysisTemplateSpec,
    DryRun, Measurement, MetricResult, RolloutAnalysis, SecretKeyRef,
};
use crate::validate::{Plan, parse_duration};

/// Argo's defaults.
const DEFAULT_FAILURE_LIMIT: i32 = 0;
const DEFAULT_INCONCLUSIVE_LIMIT: i32 = 0;
const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i32 = 4;
/// How soon a measurement that errored is retried (Argo's default).
const ERROR_RETRY: Duration = Duration::from_secs(10);
/// Measurements kept per metric (Argo's default retention).
pub const MEASUREMENTS_KEPT: usize = 10;
/// Conditions are short predicates; a bound keeps parsing cheap and shallow.
const MAX_CONDITION_LEN: usize = 1024;
/// What a secret-backed argument shows as in status and logs.
pub const MASK: &str = "********";

/// A metric ready to be measured: template arguments substituted, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub interval: Option<Duration>,
    pub initial_delay: Duration,
    /// `None`: measure until the run ends (an interval without a count).
    pub count: Option<i32>,
    pub success_condition: Option<String>,
    pub failure_condition: Option<String>,
    pub failure_limit: i32,
    pub inconclusive_limit: i32,
    pub consecutive_error_limit: i32,
    /// Measured and recorded, never failing the run (`dryRun`).
    pub dry_run: bool,
    pub provider: Provider,
    /// What is asked (query, or method and URL), secret-backed arguments
    /// masked, for status and logs.
    pub display_query: String,
}

/// Where argument values come from besides literals.
#[derive(Debug, Clone, Default)]
pub struct ArgContext<'a> {
    /// The Rollout, for `fieldRef` (absent outside a cluster).
    pub rollout: Option<&'a ObjectMeta>,
    pub stable_hash: Option<&'a str>,
    pub latest_hash: Option<&'a str>,
    /// Secret values by reference; `None` masks every secret-backed argument
    /// (the decision never needs their values, only the query does).
    pub secrets: Option<&'a BTreeMap<SecretKeyRef, String>>,
    /// The ALB as ELBv2 shows it, for `valueFrom.awsDimension`.
    pub alb: Option<&'a Observed>,
}

/// An argument's value, and whether it is a secret.
#[derive(Debug, Clone)]
pub(crate) struct ArgValue {
    value: String,
    secret: bool,
}

/// One template with literal argument values: an analysis outside a
/// Rollout (`gantry analysis run`).
pub fn literal_analysis(template: &str, args: &[(String, String)]) -> RolloutAnalysis {
    RolloutAnalysis {
        templates: vec![AnalysisTemplateRef {
            template_name: template.to_string(),
            cluster_scope: None,
        }],
        args: args
            .iter()
            .map(|(name, value)| AnalysisArg {
                name: name.clone(),
                value: Some(value.clone()),
                value_from: None,
            })
            .collect(),
        starting_step: None,
        dry_run: Vec::new(),
    }
}

/// The metrics of every analysis in the plan, by run name (`step-<i>`,
/// `background`), or every problem found.
pub fn resolve_plan(
    plan: &Plan,
    templates: &BTreeMap<String, AnalysisTemplateSpec>,
    ctx: &ArgContext,
) -> Result<BTreeMap<String, Vec<Metric>>, Vec<String>> {
    let mut runs = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, path, analysis) in plan.analyses() {
        match resolve(&path, analysis, templates, ctx) {
            Ok(metrics) => {
                runs.insert(name, metrics);
            }
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(runs)
    } else {
        Err(errors)
    }
}

/// Resolves the metrics of one analysis (several templates merged), or
/// every problem found, each with its field path.
pub fn resolve(
    path: &str,
    analysis: &RolloutAnalysis,
    templates: &BTreeMap<String, AnalysisTemplateSpec>,
    ctx: &ArgContext,
) -> Result<Vec<Metric>, Vec<String>> {
    let mut errors = Vec::new();
    let mut found = Vec::new();
    for (i, t) in analysis.templates.iter().enumerate() {
        match templates.get(&t.template_name) {
            Some(spec) => found.push((t.template_name.as_str(), spec)),
            None => errors.push(format!(
                "{path}.templates[{i}]: AnalysisTemplate {:?} not found",
                t.template_name
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let declared: Vec<&AnalysisArg> = found.iter().flat_map(|(_, s)| &s.args).collect();
    for (i, arg) in analysis.args.iter().enumerate() {
        if !declared.iter().any(|d| d.name == arg.name) {
            errors.push(format!(
                "{path}.args[{i}]: no template declares an argument named {:?}",
                arg.name
            ));
        }
    }
    let rollout_dry_run =
        dry_run_patterns(&format!("{path}.dryRun"), &analysis.dry_run, &mut errors);
    let mut metrics: Vec<Metric> = Vec::new();
    for (name, spec) in found {
        let tpath = format!("AnalysisTemplate {name}");
        let args = template_args(&tpath, spec, &analysis.args, ctx, &mut errors);
        if spec.measurement_retention.is_some() {
            errors.push(format!(
                "{tpath}: spec.measurementRetention is not supported by gantry (ten measurements are kept per metric)"
            ));
        }
        let mut dry_run =
            dry_run_patterns(&format!("{tpath}: spec.dryRun"), &spec.dry_run, &mut errors);
        dry_run.extend(rollout_dry_run.iter().cloned());
        if spec.metrics.is_empty() {
            errors.push(format!(
                "{tpath}: spec.metrics: at least one metric is required"
            ));
        }
        for (j, m) in spec.metrics.iter().enumerate() {
            let mpath = format!("{tpath}: spec.metrics[{j}]");
            if let Some(mut metric) = resolve_metric(&mpath, m, &args, &mut errors) {
                metric.dry_run = dry_run.iter().any(|p| p.matches(&metric.name));
                if metrics.iter().any(|o| o.name == metric.name) {
                    errors.push(format!(
                        "{mpath}.name: {:?} is used by another metric of this analysis",
                        metric.name
                    ));
                }
                metrics.push(metric);
            }
        }
    }
    if errors.is_empty() {
        Ok(metrics)
    } else {
        Err(errors)
    }
}

/// A `dryRun[].metricName`: Argo reads it as a regular expression over
/// the whole metric name. Most are `.*` or a plain name; only the others
/// are compiled (this runs at every reconcile of a Rollout with analysis).
#[derive(Clone)]
enum DryRunPattern {
    All,
    Name(String),
    Regex(Regex),
}

impl DryRunPattern {
    fn matches(&self, metric: &str) -> bool {
        match self {
            DryRunPattern::All => true,
            DryRunPattern::Name(name) => name == metric,
            DryRunPattern::Regex(re) => re.is_match(metric),
        }
    }
}

/// `dryRun[].metricName`s as patterns; a bad one is reported at its path.
fn dry_run_patterns(
    path: &str,
    dry_run: &[DryRun],
    errors: &mut Vec<String>,
) -> Vec<DryRunPattern> {
    dry_run
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let name = &d.metric_name;
            if name.is_empty() {
                errors.push(format!("{path}[{i}].metricName: required"));
                return None;
            }
            if name == ".*" {
                return Some(DryRunPattern::All);
            }
            // Without these, a pattern matches only itself (`-` is
            // special only inside a class).
            if !name.contains(|c| r"\.+*?()|[]{}^$".contains(c)) {
                return Some(DryRunPattern::Name(name.clone()));
            }
            Regex::new(&format!("^(?:{name})$"))
                .map(DryRunPattern::Regex)
                .map_err(|e| {
                    errors.push(format!(
                        "{path}[{i}].metricName: not a regular expression: {}",
                        one_line(&e.to_string())
                    ))
                })
                .ok()
        })
        .collect()
}

/// The template's arguments with the Rollout's values applied.
fn template_args(
    tpath: &str,
    spec: &AnalysisTemplateSpec,
    given: &[AnalysisArg],
    ctx: &ArgContext,
    errors: &mut Vec<String>,
) -> BTreeMap<String, ArgValue> {
    let mut args = BTreeMap::new();
    for (i, arg) in spec.args.iter().enumerate() {
        let apath = format!("{tpath}: spec.args[{i}] ({})", arg.name);
        let source = given.iter().find(|g| g.name == arg.name).unwrap_or(arg);
        let value = match arg_value(source, ctx) {
            Ok(Some(v)) => v,
            Ok(None) => {
                errors.push(format!(
                    "{apath}: no value: give one in the Rollout's analysis args or a default in the template"
                ));
                placeholder(&arg.name)
            }
            Err(e) => {
                errors.push(format!("{apath}: {e}"));
                placeholder(&arg.name)
            }
        };
        args.insert(arg.name.clone(), value);
    }
    args
}

/// Stands in for an argument whose value is missing, so each use of it is
/// not reported again as undeclared: the resolution fails on the one
/// error already given, and the placeholder is never measured with.
fn placeholder(name: &str) -> ArgValue {
    ArgValue {
        value: format!("<{name}>"),
        secret: false,
    }
}

fn arg_value(arg: &AnalysisArg, ctx: &ArgContext) -> Result<Option<ArgValue>, String> {
    let plain = |value: &str| {
        Some(ArgValue {
            value: value.to_string(),
            secret: false,
        })
    };
    let Some(from) = &arg.value_from else {
        return Ok(arg.value.as_deref().and_then(plain));
    };
    if let Some(which) = &from.pod_template_hash_value {
        let hash = match which.as_str() {
            "Stable" => ctx.stable_hash,
            "Latest" => ctx.latest_hash,
            other => {
                return Err(format!(
                    "valueFrom.podTemplateHashValue: expected Stable or Latest, got {other:?}"
                ));
            }
        };
        return hash.map(plain).ok_or_else(|| {
            "valueFrom.podTemplateHashValue: only known inside a Rollout (give --arg)".into()
        });
    }
    if let Some(field) = &from.field_ref {
        let meta = ctx
            .rollout
            .ok_or("valueFrom.fieldRef: only known inside a Rollout (give --arg)")?;
        return field_value(meta, &field.field_path).map(|v| plain(&v));
    }
    if let Some(which) = &from.aws_dimension {
        return aws_dimension(which, ctx.alb).map(|v| plain(&v));
    }
    if let Some(key) = &from.secret_key_ref {
        let value = match ctx.secrets {
            None => MASK.to_string(),
            Some(secrets) => secrets.get(key).cloned().ok_or_else(|| {
                format!(
                    "valueFrom.secretKeyRef: key {:?} of Secret {:?} not found",
                    key.key, key.name
                )
            })?,
        };
        return Ok(Some(ArgValue {
            value,
            secret: true,
        }));
    }
    Err("valueFrom: give podTemplateHashValue, fieldRef, awsDimension or secretKeyRef".into())
}

/// The CloudWatch dimension value of an ALB resource: the ARN's part after
/// `targetgroup/` (kept) or `loadbalancer/` (dropped).
fn aws_dimension(which: &str, alb: Option<&Observed>) -> Result<String, String> {
    let alb = alb.ok_or(
        "valueFrom.awsDimension: the ALB is not known here: the controller reads it through \
         ELBv2 (--verify-alb-weights, or direct mode); elsewhere give --arg",
    )?;
    let (resource, marker, keep) = match which {
        "CanaryTargetGroup" => (&alb.canary, "targetgroup/", true),
        "StableTargetGroup" => (&alb.stable, "targetgroup/", true),
        "LoadBalancer" => (&alb.load_balancer, "loadbalancer/", false),
        other => {
            return Err(format!(
                "valueFrom.awsDimension: expected CanaryTargetGroup, StableTargetGroup or LoadBalancer, got {other:?}"
            ));
        }
    };
    let arn = &resource
        .as_ref()
        .ok_or_else(|| format!("valueFrom.awsDimension: {which} not found on the ALB yet"))?
        .arn;
    let at = arn
        .find(marker)
        .ok_or_else(|| format!("valueFrom.awsDimension: {arn:?} is not a {which} ARN"))?;
    Ok(arn[if keep { at } else { at + marker.len() }..].to_string())
}

/// The fields of a Rollout an argument may read. A label or annotation
/// the Rollout does not have reads as empty, as in Argo (Kubernetes'
/// field paths): a template may name one a later revision sets.
fn field_value(meta: &ObjectMeta, path: &str) -> Result<String, String> {
    let keyed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    let found = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        _ => {
            if let Some(k) = keyed("metadata.labels['") {
                let label = meta.labels.as_ref().and_then(|l| l.get(&k).cloned());
                Some(label.unwrap_or_default())
            } else if let Some(k) = keyed("metadata.annotations['") {
                let annotation = meta.annotations.as_ref().and_then(|a| a.get(&k).cloned());
                Some(annotation.unwrap_or_default())
            } else {
                return Err(format!(
                    "valueFrom.fieldRef.fieldPath: {path:?} is not supported (metadata.name, metadata.namespace, metadata.labels['k'], metadata.annotations['k'])"
                ));
            }
        }
    };
    found.ok_or_else(|| format!("valueFrom.fieldRef.fieldPath: {path:?} is not set on the Rollout"))
}

fn resolve_metric(
    mpath: &str,
    m: &crate::types::Metric,
    args: &BTreeMap<String, ArgValue>,
    errors: &mut Vec<String>,
) -> Option<Metric> {
    let before = errors.len();
    let mut sub = |field: &str, text: &str, masked: bool| -> String {
        match substitute(text, args, masked) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("{mpath}.{field}: {e}"));
                String::new()
            }
        }
    };
    let interval = m.interval.as_deref().map(|s| sub("interval", s, false));
    let initial_delay = m
        .initial_delay
        .as_deref()
        .map(|s| sub("initialDelay", s, false));
    let success = m
        .success_condition
        .as_deref()
        .map(|s| sub("successCondition", s, false));
    let failure = m
        .failure_condition
        .as_deref()
        .map(|s| sub("failureCondition", s, false));
    let int =
        |field: &str, v: &Option<IntOrString>, sub: &mut dyn FnMut(&str, &str, bool) -> String| {
            v.as_ref().map(|v| match v {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => sub(field, s, false),
            })
        };
    let count = int("count", &m.count, &mut sub);
    let failure_limit = int("failureLimit", &m.failure_limit, &mut sub);
    let inconclusive_limit = int("inconclusiveLimit", &m.inconclusive_limit, &mut sub);
    let consecutive_error_limit = int(
        "consecutiveErrorLimit",
        &m.consecutive_error_limit,
        &mut sub,
    );
    if m.name.is_empty() {
        errors.push(format!("{mpath}.name: required"));
    }
    let duration = |field: &str, v: Option<String>, errors: &mut Vec<String>| {
        v.map(|s| {
            parse_duration(&IntOrString::String(s)).unwrap_or_else(|e| {
                errors.push(format!("{mpath}.{field}: {e}"));
                Duration::ZERO
            })
        })
    };
    let interval = duration("interval", interval, errors);
    let initial_delay = duration("initialDelay", initial_delay, errors).unwrap_or_default();
    let number = |field: &str, v: Option<String>, min: i32, errors: &mut Vec<String>| {
        v.and_then(|s| match s.trim().parse::<i32>() {
            Ok(n) if n >= min => Some(n),
            _ => {
                errors.push(format!(
                    "{mpath}.{field}: expected a whole number ≥ {min}, got {s:?}"
                ));
                None
            }
        })
    };
    let count = number("count", count, 1, errors);
    let failure_limit = number("failureLimit", failure_limit, 0, errors);
    let inconclusive_limit = number("inconclusiveLimit", inconclusive_limit, 0, errors);
    let consecutive_error_limit =
        number("consecutiveErrorLimit", consecutive_error_limit, 0, errors);
    if count.is_some_and(|c| c > 1) && interval.is_none() {
        errors.push(format!(
            "{mpath}.interval: required when count is more than 1"
        ));
    }
    for (field, condition) in [
        ("successCondition", &success),
        ("failureCondition", &failure),
    ] {
        if let Some(c) = condition
            && let Err(e) = check_condition(c)
        {
            errors.push(format!("{mpath}.{field}: {e}"));
        }
    }
    let provider = provider::resolve(mpath, &m.provider, args, errors);
    if m.provider.job.is_some() && (success.is_some() || failure.is_some()) {
        errors.push(format!(
            "{mpath}: a job metric is judged by its Job (Complete: Successful, Failed: Failed); leave successCondition and failureCondition out"
        ));
    }
    if errors.len() > before {
        return None;
    }
    let (provider, display_query) = provider?;
    Some(Metric {
        name: m.name.clone(),
        // Argo: no interval and no count measures once.
        count: count.or(if interval.is_none() { Some(1) } else { None }),
        interval,
        initial_delay,
        success_condition: success,
        failure_condition: failure,
        failure_limit: failure_limit.unwrap_or(DEFAULT_FAILURE_LIMIT),
        inconclusive_limit: inconclusive_limit.unwrap_or(DEFAULT_INCONCLUSIVE_LIMIT),
        consecutive_error_limit: consecutive_error_limit.unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT),
        dry_run: false,
        provider,
        display_query,
    })
}

/// Replaces `{{args.NAME}}` (spaces inside the braces allowed); `masked`
/// writes secret-backed values as the mask.
pub(crate) fn substitute(
    text: &str,
    args: &BTreeMap<String, ArgValue>,
    masked: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {text:?}"))?;
        let inner = after[..end].trim();
        let name = inner
            .strip_prefix("args.")
            .ok_or_else(|| format!("{{{{{inner}}}}}: only {{{{args.NAME}}}} can be substituted"))?;
        let arg = args.get(name).ok_or_else(|| {
            format!("{{{{args.{name}}}}}: no argument named {name:?} is declared")
        })?;
        out.push_str(if masked && arg.secret {
            MASK
        } else {
            &arg.value
        });
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Judging a measurement.

/// What a Prometheus query returned.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    Scalar(f64),
    /// One value per series.
    Vector(Vec<f64>),
    /// One list of values per series.
    Matrix(Vec<Vec<f64>>),
    String(String),
    /// A web metric's answer (what its jsonPath selects).
    Json(serde_json::Value),
    /// A CloudWatch metric's GetMetricData results.
    MetricData(Vec<MetricDataResult>),
}

/// One GetMetricData result, with the field names Argo's conditions use
/// (`result[0].Values`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricDataResult {
    pub id: String,
    pub label: String,
    /// RFC 3339, oldest first.
    pub timestamps: Vec<String>,
    pub values: Vec<f64>,
    pub status_code: String,
}

impl QueryValue {
    /// Empty, or NaN somewhere: no evidence either way.
    fn no_data(&self) -> Option<&'static str> {
        let nan = |v: &[f64]| v.iter().any(|x| x.is_nan());
        match self {
            QueryValue::Scalar(x) if x.is_nan() => Some("the query returned NaN"),
            QueryValue::Vector(v) if v.is_empty() => {
                Some("the query returned no data (empty vector)")
            }
            QueryValue::Vector(v) if nan(v) => Some("the query returned NaN"),
            QueryValue::Matrix(m) if m.is_empty() => {
                Some("the query returned no data (empty matrix)")
            }
            QueryValue::Matrix(m) if m.iter().any(|s| nan(s)) => Some("the query returned NaN"),
            QueryValue::Json(serde_json::Value::Null) => {
                Some("the answer has no value there (null or nothing at jsonPath)")
            }
            QueryValue::MetricData(r) if r.iter().all(|x| x.values.is_empty()) => {
                Some("CloudWatch returned no datapoints in the interval")
            }
            QueryValue::MetricData(r) if r.iter().any(|x| nan(&x.values)) => {
                Some("CloudWatch returned NaN")
            }
            _ => None,
        }
    }

    fn to_expr(&self) -> expr::Value {
        let floats =
            |v: &[f64]| expr::Value::Array(v.iter().map(|x| expr::Value::Float(*x)).collect());
        match self {
            QueryValue::Scalar(x) => expr::Value::Float(*x),
            QueryValue::Vector(v) => floats(v),
            QueryValue::Matrix(m) => expr::Value::Array(m.iter().map(|s| floats(s)).collect()),
            QueryValue::String(s) => expr::Value::String(s.clone()),
            QueryValue::Json(v) => serde_json::from_value(v.clone()).unwrap_or_default(),
            QueryValue::MetricData(r) => serde_json::to_value(r)
                .and_then(serde_json::from_value)
                .unwrap_or_default(),
        }
    }
}

impl fmt::Display for QueryValue {
    /// Argo's notation: `0.5`, `[0.5,0.25]`, `[[1,2],[3]]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[f64]| {
            let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            format!("[{}]", items.join(","))
        };
        match self {
            QueryValue::Scalar(x) => write!(f, "{x}"),
            QueryValue::Vector(v) => f.write_str(&list(v)),
            QueryValue::Matrix(m) => {
                let series: Vec<String> = m.iter().map(|s| list(s)).collect();
                write!(f, "[{}]", series.join(","))
            }
            QueryValue::String(s) => f.write_str(s),
            QueryValue::Json(v) => write!(f, "{v}"),
            QueryValue::MetricData(r) => {
                let each: Vec<String> = r
                    .iter()
                    .map(|x| format!("{}={}", x.id, list(&x.values)))
                    .collect();
                f.write_str(&each.join(" "))
            }
        }
    }
}

/// A measurement's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub phase: AnalysisPhase,
    pub message: Option<String>,
}

fn environment() -> expr::Environment<'static> {
    let mut env = expr::Environment::new();
    for (name, test) in [
        ("isNaN", f64::is_nan as fn(f64) -> bool),
        ("isInf", f64::is_infinite),
    ] {
        env.add_function(name, move |c| match c.args.as_slice() {
            [expr::Value::Float(x)] => Ok(expr::Value::Bool(test(*x))),
            [expr::Value::Integer(_)] => Ok(expr::Value::Bool(false)),
            _ => Err(expr::Error::ExprError(format!(
                "{name}() takes one number, e.g. {name}(result[0])"
            ))),
        });
    }
    env
}

/// Syntax-checks a condition.
pub fn check_condition(condition: &str) -> Result<(), String> {
    if condition.len() > MAX_CONDITION_LEN {
        return Err(format!("longer than {MAX_CONDITION_LEN} characters"));
    }
    screened(condition).map_err(|e| format!("{condition:?} does not parse: {e}"))?;
    guarded(|| {
        expr::compile(condition)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .map_err(|e| format!("{condition:?} does not parse: {}", one_line(&e)))
}

/// How deep brackets may nest in a condition.
const MAX_NESTING: usize = 32;
/// How many numbers a range (`a..b`) in a condition may hold.
const MAX_RANGE: i64 = 10_000;
/// How many `?` (ternaries, `??`, `?.`) a condition may have; half as
/// many `if` and `let`.
const MAX_BRANCHES: usize = 16;

/// What the expression engine is not given: unbalanced or too deeply
/// nested brackets, and ranges other than small literal ones.
fn screened(condition: &str) -> Result<(), String> {
    let code = outside_strings(condition)?;
    balanced(&code)?;
    bounded_ranges(&code)?;
    // The parser's time doubles with every few `?` (`a ? b : c`, `??`,
    // `?.`; 50 take 0.4 s) and every `if` or `let` (20 take 3.5 s): both
    // found by fuzzing.
    let questions = code.matches('?').count();
    if questions > MAX_BRANCHES {
        return Err(format!(
            "{questions} `?` operators; at most {MAX_BRANCHES} (split the condition)"
        ));
    }
    let words = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| matches!(*w, "if" | "let"))
        .count();
    if words > MAX_BRANCHES / 2 {
        return Err(format!(
            "{words} `if`/`let`; at most {} (split the condition)",
            MAX_BRANCHES / 2
        ));
    }
    Ok(())
}

/// Ranges (`200..299`) have integer literal ends at most `MAX_RANGE`
/// apart: the engine builds the whole list, so `0..1e9` or
/// `0..result[0]` would take gigabytes (found by fuzzing).
fn bounded_ranges(code: &str) -> Result<(), String> {
    let literal = "a range (a..b) needs integer literals at both ends";
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let mut rest = code;
    while let Some(at) = rest.find("..") {
        let (before, after) = (&rest[..at], &rest[at + 2..]);
        // The start: decimal digits, perhaps signed, not part of a longer word.
        let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let head = &before[..before.len() - digits];
        let negative = head.ends_with('-');
        let head = head.strip_suffix('-').unwrap_or(head);
        if digits == 0 || head.ends_with(word) {
            return Err(literal.into());
        }
        let start: i64 = before[before.len() - digits..]
            .parse()
            .map_err(|_| literal)?;
        let start = if negative { -start } else { start };
        // The end, the same way.
        let (negative, unsigned) = match after.strip_prefix('-') {
            Some(u) => (true, u),
            None => (false, after),
        };
        let digits = unsigned.len()
            - unsigned
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        if digits == 0 || unsigned[digits..].starts_with(word) {
            return Err(literal.into());
        }
        let end: i64 = unsigned[..digits].parse().map_err(|_| literal)?;
        let end = if negative { -end } else { end };
        if (end - start).abs() > MAX_RANGE {
            return Err(format!("a range (a..b) holds at most {MAX_RANGE} numbers"));
        }
        rest = &unsigned[digits..];
    }
    Ok(())
}

/// The condition with the insides of its string literals blanked (one
/// space per character, so columns stay), or which string is not closed.
fn outside_strings(condition: &str) -> Result<String, String> {
    let mut out = String::with_capacity(condition.len());
    let mut quote = None;
    let mut escaped = false;
    for c in condition.chars() {
        match quote {
            Some(q) if c == q && !escaped => {
                quote = None;
                out.push(c);
            }
            Some(_) => {
                escaped = !escaped && c == '\\';
                out.push(' ');
            }
            None => {
                if matches!(c, '"' | '\'' | '`') {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    match quote {
        Some(q) => Err(format!("unclosed {q} string")),
        None => Ok(out),
    }
}

/// Brackets, parentheses and braces balanced (in `code`, strings blanked)
/// and nested at most `MAX_NESTING` deep. Checked before the expression engine
/// sees a condition: its parser backtracks exponentially in the number of
/// unclosed brackets (`a[[[[…` takes seconds from 25 on; found by
/// fuzzing), so that a typo in a template cannot stall the controller.
fn balanced(code: &str) -> Result<(), String> {
    let mut open: Vec<(char, usize)> = Vec::new();
    for (i, c) in code.chars().enumerate() {
        match c {
            '(' | '[' | '{' => {
                open.push((c, i + 1));
                if open.len() > MAX_NESTING {
                    return Err(format!(
                        "brackets nested deeper than {MAX_NESTING} at column {}",
                        i + 1
                    ));
                }
            }
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match open.pop() {
                    Some((o, _)) if o == want => {}
                    Some((o, at)) => {
                        return Err(format!(
                            "{c:?} at column {} closes {o:?} from column {at}",
                            i + 1
                        ));
                    }
                    None => return Err(format!("{c:?} at column {} closes nothing", i + 1)),
                }
            }
            _ => {}
        }
    }
    match open.last() {
        Some((o, at)) => Err(format!("{o:?} at column {at} is never closed")),
        None => Ok(()),
    }
}

/// Runs the expression engine so that it cannot take the caller down:
/// expr-lang 2.1 reaches `unreachable!` on some inputs (a map literal with
/// a bare name as a value, `{a: b}`; found by fuzzing), and a template's
/// condition must fail as an error, not crash the controller.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(format!("the expression engine failed on it ({why})"))
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a condition tests for empty or NaN results itself.
fn handles_no_data(condition: &str) -> bool {
    let c: String = condition.split_whitespace().collect();
    c.contains("len(result") || c.contains("isNaN(")
}

/// Judges one value with Argo's rules: failure wins; with one condition
/// the other is its negation; neither true is Inconclusive. An empty or NaN
/// result is Inconclusive unless a condition tests for it (`len(result)`,
/// `isNaN(…)`), and never crashes an evaluation.
pub fn evaluate(metric: &Metric, value: &QueryValue) -> Verdict {
    let no_data = value.no_data();
    let conditions = [&metric.success_condition, &metric.failure_condition];
    let handled = conditions
        .iter()
        .any(|c| c.as_deref().is_some_and(handles_no_data));
    if let Some(why) = no_data
        && !handled
    {
        return Verdict {
            phase: AnalysisPhase::Inconclusive,
            message: Some(why.into()),
        };
    }
    let env = environment();
    let mut ctx = expr::Context::default();
    ctx.insert("result", value.to_expr());
    let eval = |field: &str, condition: &Option<String>| -> Result<Option<bool>, String> {
        let Some(c) = condition else { return Ok(None) };
        let checked =
            screened(c).and_then(|()| guarded(|| env.eval(c, &ctx).map_err(|e| e.to_string())));
        match checked {
            Ok(expr::Value::Bool(b)) => Ok(Some(b)),
            Ok(other) => Err(format!(
                "{field} {c:?} gave {other:?} for result {value}, expected true or false"
            )),
            Err(e) => Err(format!(
                "{field} {c:?} failed for result {value}: {}",
                one_line(&e)
            )),
        }
    };
    let outcome = eval("successCondition", &metric.success_condition)
        .and_then(|s| eval("failureCondition", &metric.failure_condition).map(|f| (s, f)));
    let (success, failure) = match outcome {
        Ok(pair) => pair,
        // An empty result must not become an error that counts toward a failure.
        Err(message) => {
            let phase = if no_data.is_some() {
                AnalysisPhase::Inconclusive
            } else {
                AnalysisPhase::Error
            };
            return Verdict {
                phase,
                message: Some(message),
            };
        }
    };
    let (success, failure) = match (success, failure) {
        (None, None) => (true, false),
        (Some(s), None) => (s, !s),
        (None, Some(f)) => (!f, f),
        (Some(s), Some(f)) => (s, f),
    };
    let phase = if failure {
        AnalysisPhase::Failed
    } else if success {
        AnalysisPhase::Successful
    } else {
        AnalysisPhase::Inconclusive
    };
    Verdict {
        phase,
        message: None,
    }
}

// ---------------------------------------------------------------------------
// Runs and their metrics over time.

/// A new run with one pending result per metric.
pub fn new_run(name: &str, hash: &str, metrics: &[Metric], now: Timestamp) -> AnalysisRunStatus {
    AnalysisRunStatus {
        name: name.into(),
        pod_template_hash: hash.into(),
        phase: AnalysisPhase::Running,
        started_at: now.to_string(),
        message: None,
        metrics: metrics
            .iter()
            .map(|m| MetricResult {
                name: m.name.clone(),
                phase: AnalysisPhase::Pending,
                dry_run: m.dry_run,
                query: m.display_query.clone(),
                ..Default::default()
            })
            .collect(),
    }
}

/// Adds a measurement to a metric's result and reassesses it.
pub fn record(result: &mut MetricResult, metric: &Metric, m: Measurement) {
    match m.phase {
        AnalysisPhase::Error => {
            result.error += 1;
            result.consecutive_error += 1;
        }
        phase => {
            result.count += 1;
            result.consecutive_error = 0;
            match phase {
                AnalysisPhase::Successful => result.successful += 1,
                AnalysisPhase::Failed => result.failed += 1,
                _ => result.inconclusive += 1,
            }
        }
    }
    let last_message = m.message.clone();
    result.measurements.push(m);
    let excess = result.measurements.len().saturating_sub(MEASUREMENTS_KEPT);
    result.measurements.drain(..excess);
    let (phase, message) = assess(result, metric);
    result.phase = phase;
    result.message = message.or(last_message);
}

/// A metric's phase from its counts and limits (Argo's order).
fn assess(r: &MetricResult, m: &Metric) -> (AnalysisPhase, Option<String>) {
    let limits = [
        (
            r.failed,
            m.failure_limit,
            AnalysisPhase::Failed,
            "failed",
            "failureLimit",
        ),
        (
            r.inconclusive,
            m.inconclusive_limit,
            AnalysisPhase::Inconclusive,
            "inconclusive",
            "inconclusiveLimit",
        ),
        (
            r.consecutive_error,
            m.consecutive_error_limit,
            AnalysisPhase::Error,
            "consecutive errors",
            "consecutiveErrorLimit",
        ),
    ];
    for (count, limit, phase, what, field) in limits {
        if count > limit {
            let mut message = format!("{what} ({count}) > {field} ({limit})");
            // An error verdict is only useful with the error itself.
            if phase == AnalysisPhase::Error
                && let Some(last) = r.measurements.last().and_then(|m| m.message.as_deref())
            {
                message = format!("{message}: {last}");
            }
            return (phase, Some(message));
        }
    }
    if m.count.is_some_and(|c| r.count >= c) {
        return (AnalysisPhase::Successful, None);
    }
    (AnalysisPhase::Running, None)
}

/// A run's phase from its metrics: a failure or error ends it at once, an
/// inconclusive metric asks a human, and it succeeds when all metrics have
/// completed. Dry-run metrics are measured to the end but only reported.
pub fn assess_run(run: &mut AnalysisRunStatus) {
    let (dry, judged): (Vec<&MetricResult>, Vec<&MetricResult>) =
        run.metrics.iter().partition(|m| m.dry_run);
    let worst = [
        AnalysisPhase::Failed,
        AnalysisPhase::Error,
        AnalysisPhase::Inconclusive,
    ]
    .into_iter()
    .find_map(|p| judged.iter().find(|m| m.phase == p));
    let verdict = |m: &MetricResult| {
        format!(
            "metric {:?} assessed {:?}: {}",
            m.name,
            m.phase,
            m.message.clone().unwrap_or_default()
        )
    };
    if let Some(m) = worst {
        run.phase = m.phase;
        run.message = Some(verdict(m));
    } else if run.metrics.iter().all(|m| m.phase.completed()) {
        run.phase = AnalysisPhase::Successful;
        let missed: Vec<String> = dry
            .iter()
            .filter(|m| m.phase != AnalysisPhase::Successful)
            .map(|m| verdict(m))
            .collect();
        run.message = (!missed.is_empty()).then(|| format!("dry run: {}", missed.join("; ")));
    } else {
        run.phase = AnalysisPhase::Running;
    }
}

/// When the metric's next measurement is due; `None` once it is complete.
pub fn next_measurement(
    run: &AnalysisRunStatus,
    result: &MetricResult,
    metric: &Metric,
) -> Option<Timestamp> {
    if result.phase.completed() || run.phase.completed() {
        return None;
    }
    let after = |t: &str, d: Duration| {
        let t: Timestamp = t.parse().ok()?;
        Some(t + SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
    };
    match result.measurements.last() {
        None => after(&run.started_at, metric.initial_delay),
        Some(last) => {
            let wait = match (last.phase, metric.interval) {
                (AnalysisPhase::Error, Some(i)) => i.min(ERROR_RETRY),
                (AnalysisPhase::Error, None) => ERROR_RETRY,
                (_, Some(i)) => i,
                // Count reached without an interval is complete; kept for safety.
                (_, None) => Duration::ZERO,
            };
            after(&last.finished_at, wait)
        }
    }
}

/// The metrics of `run` due at `now`.
pub fn due<'m>(run: &AnalysisRunStatus, metrics: &'m [Metric], now: Timestamp) -> Vec<&'m Metric> {
    metrics
        .iter()
        .filter(|m| {
            run.metrics
                .iter()
                .find(|r| r.name == m.name)
                .and_then(|r| next_measurement(run, r, m))
                .is_some_and(|at| at <= now)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FieldRef, ValueFrom};

    #[test]
    fn dry_run_patterns_match_whole_names_compiling_only_real_regexes() {
        let given: Vec<DryRun> = [".*", "error-rate", "lat.*", "p(50|99)"]
            .iter()
            .map(|n| DryRun {
                metric_name: n.to_string(),
            })
            .collect();
        let mut errors = Vec::new();
        let patterns = dry_run_patterns("dryRun", &given, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let kinds: Vec<&str> = patterns
            .iter()
            .map(|p| match p {
                DryRunPattern::All => "all",
                DryRunPattern::Name(_) => "name",
                DryRunPattern::Regex(_) => "regex",
            })
            .collect();
        assert_eq!(kinds, ["all", "name", "regex", "regex"]);
        let matched = |i: usize, metric: &str| patterns[i].matches(metric);
        assert!(matched(0, "anything"));
        assert!(matched(1, "error-rate") && !matched(1, "error-rates"));
        assert!(matched(2, "latency") && !matched(2, "p-latency"));
        assert!(matched(3, "p99") && !matched(3, "p999"));
    }

    fn metric(success: Option<&str>, failure: Option<&str>) -> Metric {
        Metric {
            name: "error-rate".into(),
            interval: None,
            initial_delay: Duration::ZERO,
            count: Some(1),
            success_condition: success.map(str::to_string),
            failure_condition: failure.map(str::to_string),
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            dry_run: false,
            provider: Provider::Prometheus(Prometheus {
                address: "http://p".into(),
                query: "q".into(),
                timeout: Duration::from_secs(30),
                headers: vec![],
                insecure: false,
            }),
            display_query: "q".into(),
        }
    }

    fn phase(success: Option<&str>, failure: Option<&str>, v: QueryValue) -> AnalysisPhase {
        evaluate(&metric(success, failure), &v).phase
    }

    use AnalysisPhase::*;
    use QueryValue::*;

    fn template_spec(yaml: &str) -> AnalysisTemplateSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_missing_argument_is_reported_once_not_at_each_use() {
        let spec = template_spec(
            "args: [{name: namespace}]\n\
             metrics:\n\
             - name: errors\n  \
               successCondition: result[0] < 1\n  \
               provider:\n    \
                 prometheus:\n      \
                   address: http://prometheus.{{args.namespace}}:9090\n      \
                   query: up{namespace=\"{{args.namespace}}\"} + on() up{ns=\"{{ args.namespace }}\"}\n",
        );
        let templates = BTreeMap::from([("t".to_string(), spec)]);
        let mut analysis = literal_analysis("t", &[]);
        analysis.args.push(AnalysisArg {
            name: "namespace".into(),
            value: None,
            value_from: Some(ValueFrom {
                field_ref: Some(FieldRef {
                    field_path: "metadata.namespace".into(),
                }),
                ..Default::default()
            }),
        });
        let no_namespace = ObjectMeta::default();
        let ctx = ArgContext {
            rollout: Some(&no_namespace),
            ..Default::default()
        };
        let errors = resolve("analysis", &analysis, &templates, &ctx).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("spec.args[0] (namespace)"),
            "{}",
            errors[0]
        );
        assert!(
            errors[0].contains("\"metadata.namespace\" is not set"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn a_prometheus_without_address_is_told_it_is_required() {
        let spec =
            template_spec("metrics:\n- name: errors\n  provider: {prometheus: {query: up}}\n");
        let templates = BTreeMap::from([("t".to_string(), spec)]);
        let errors = resolve(
            "analysis",
            &literal_analysis("t", &[]),
            &templates,
            &ArgContext::default(),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("spec.metrics[0].provider.prometheus.address: required"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn argo_condition_forms() {
        let v = || Vector(vec![0.01]);
        assert_eq!(phase(Some("result[0] < 0.05"), None, v()), Successful);
        assert_eq!(phase(Some("result[0] < 0.005"), None, v()), Failed);
        assert_eq!(phase(None, Some("result[0] > 0.05"), v()), Successful);
        assert_eq!(phase(None, Some("result[0] >= 0.01"), v()), Failed);
        assert_eq!(phase(Some("result < 0.05"), None, Scalar(0.01)), Successful);
        assert_eq!(
            phase(Some("result[0] * 100 < 2 && result[0] >= 0"), None, v()),
            Successful
        );
        assert_eq!(
            phase(Some("!(result[0] > 1) || false"), None, v()),
            Successful
        );
        assert_eq!(
            phase(Some("result[0] < 1"), None, v()),
            Successful,
            "int literal vs float"
        );
        assert_eq!(
            phase(
                Some("all(result, {# < 0.05})"),
                None,
                Vector(vec![0.01, 0.02])
            ),
            Successful
        );
        // Both conditions: neither true is inconclusive.
        assert_eq!(
            phase(Some("result[0] < 0.005"), Some("result[0] > 0.05"), v()),
            Inconclusive
        );
        assert_eq!(phase(None, None, v()), Successful);
    }

    #[test]
    fn empty_and_nan_are_inconclusive_by_default() {
        for v in [
            Vector(vec![]),
            Vector(vec![f64::NAN]),
            Scalar(f64::NAN),
            Matrix(vec![]),
        ] {
            // Index out of range must not crash, and a negated comparison must not pass.
            assert_eq!(
                phase(Some("result[0] < 0.05"), None, v.clone()),
                Inconclusive,
                "{v:?}"
            );
            assert_eq!(
                phase(None, Some("result[0] > 0.05"), v.clone()),
                Inconclusive,
                "{v:?}"
            );
            assert_eq!(
                phase(Some("!(result[0] > 0.05)"), None, v.clone()),
                Inconclusive,
                "{v:?}"
            );
        }
        // A condition that tests for it decides.
        let empty = || Vector(vec![]);
        assert_eq!(
            phase(Some("len(result) == 0 || result[0] < 0.05"), None, empty()),
            Successful
        );
        assert_eq!(phase(None, Some("len(result) == 0"), empty()), Failed);
        assert_eq!(
            phase(None, Some("isNaN(result[0])"), Vector(vec![f64::NAN])),
            Failed
        );
        assert_eq!(
            phase(None, Some("isNaN(result[0])"), Vector(vec![0.2])),
            Successful
        );
        // …and if it still trips over the empty result, that is inconclusive, not an error.
        assert_eq!(phase(Some("isNaN(result[0])"), None, empty()), Inconclusive);
    }

    #[test]
    fn evaluation_errors_are_errors_with_the_condition_named() {
        let v = evaluate(&metric(Some("result[3] < 1"), None), &Vector(vec![0.1]));
        assert_eq!(v.phase, Error);
        let message = v.message.unwrap();
        assert!(
            message.contains("successCondition \"result[3] < 1\""),
            "{message}"
        );
        let v = evaluate(&metric(Some("result[0] + 1"), None), &Vector(vec![0.1]));
        assert_eq!(v.phase, Error);
        assert!(v.message.unwrap().contains("expected true or false"));
    }

    #[test]
    fn conditions_are_syntax_checked() {
        assert!(check_condition("result[0] < 0.05").is_ok());
        let e = check_condition("result[0] <").unwrap_err();
        assert!(e.contains("does not parse"), "{e}");
        assert!(check_condition(&"(".repeat(2000)).is_err());
        // Unbalanced brackets are refused before the expression engine's
        // parser, which backtracks exponentially on them (found by fuzzing).
        let slow = format!("a{}", "[".repeat(25));
        let started = std::time::Instant::now();
        let e = check_condition(&slow).unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_millis(100),
            "{e}"
        );
        assert!(e.contains("'[' at column 26 is never closed"), "{e}");
        for (bad, why) in [
            (
                "len(result] > 0",
                "']' at column 11 closes '(' from column 4",
            ),
            ("result[0]) < 1", "')' at column 10 closes nothing"),
            ("result == \"up", "unclosed \" string"),
        ] {
            let e = check_condition(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(check_condition("result[0] == \"(\" || all(result, {# > [0][0]})").is_ok());
        // A range is built whole: only small literal ones (found by fuzzing).
        assert!(check_condition("result[0] in 200..299").is_ok());
        assert!(check_condition("result[0] in -5..-1 || result[0] == \"0..99999999\"").is_ok());
        let e = check_condition("len(999..99397652) > 0").unwrap_err();
        assert!(
            e.contains("a range (a..b) holds at most 10000 numbers"),
            "{e}"
        );
        for bad in [
            "any(0..result[0], {# > 1})",
            "0x10..0xFFFFFFF",
            "1_000..99_999_999",
            "x1..2",
        ] {
            let e = check_condition(bad).unwrap_err();
            assert!(
                e.contains("needs integer literals at both ends"),
                "{bad}: {e}"
            );
        }
        let many = format!(
            "any(result, {{{}}})",
            "# > 1 ? true : ".repeat(20) + "false"
        );
        let e = check_condition(&many).unwrap_err();
        assert!(e.contains("20 `?` operators; at most 16"), "{e}");
        assert!(check_condition("result[0] ?? 0 > 1 ? true : false").is_ok());
        let e = check_condition(&format!("{} 1 > 0", "+if".repeat(9))).unwrap_err();
        assert!(e.contains("9 `if`/`let`; at most 8"), "{e}");
        let deep = format!("{}1{}", "(".repeat(40), ")".repeat(40));
        assert!(
            check_condition(&deep)
                .unwrap_err()
                .contains("nested deeper than 32")
        );
    }

    #[test]
    fn a_condition_the_expression_engine_panics_on_is_an_error() {
        // Found by fuzzing: expr-lang 2.1 reaches unreachable!() here.
        let condition = "all(result, {a: b})";
        let e = check_condition(condition).unwrap_err();
        assert!(e.contains("the expression engine failed on it"), "{e}");
        let v = evaluate(&metric(Some(condition), None), &Vector(vec![0.1]));
        assert_eq!(v.phase, Error);
        assert!(v.message.unwrap().contains("successCondition"));
    }

    #[test]
    fn values_print_like_argo() {
        assert_eq!(Vector(vec![0.5, 0.25]).to_string(), "[0.5,0.25]");
        assert_eq!(Scalar(1.0).to_string(), "1");
        assert_eq!(
            Matrix(vec![vec![1.0, 2.0], vec![]]).to_string(),
            "[[1,2],[]]"
        );
    }

    fn measurement(phase: AnalysisPhase, at: &str) -> Measurement {
        Measurement {
            phase,
            value: None,
            started_at: at.into(),
            finished_at: at.into(),
            message: (phase == Error).then(|| "connection refused".into()),
        }
    }

    #[test]
    fn limits_decide_the_metric_phase() {
        let mut m = metric(Some("result[0] < 1"), None);
        m.count = Some(5);
        m.interval = Some(Duration::from_secs(60));
        m.failure_limit = 1;
        let mut r = MetricResult::default();
        let t = "2026-01-01T00:00:00Z";
        record(&mut r, &m, measurement(Failed, t));
        assert_eq!(r.phase, Running, "one failure is within failureLimit 1");
        record(&mut r, &m, measurement(Failed, t));
        assert_eq!(r.phase, Failed);
        assert_eq!(r.message.as_deref(), Some("failed (2) > failureLimit (1)"));

        let mut r = MetricResult::default();
        for _ in 0..4 {
            record(&mut r, &m, measurement(Error, t));
        }
        assert_eq!((r.phase, r.count, r.error), (Running, 0, 4));
        record(&mut r, &m, measurement(Error, t));
        assert_eq!(r.phase, Error);
        assert!(
            r.message
                .as_deref()
                .unwrap()
                .contains("consecutive errors (5) > consecutiveErrorLimit (4): connection refused")
        );

        let mut r = MetricResult::default();
        for _ in 0..4 {
            record(&mut r, &m, measurement(Error, t));
            record(&mut r, &m, measurement(Successful, t));
        }
        assert_eq!(
            r.phase, Running,
            "errors between successes are not consecutive"
        );
        record(&mut r, &m, measurement(Successful, t));
        assert_eq!((r.phase, r.count), (Successful, 5));

        m.count = None;
        let mut r = MetricResult::default();
        for _ in 0..15 {
            record(&mut r, &m, measurement(Successful, t));
        }
        assert_eq!(
            (r.phase, r.count),
            (Running, 15),
            "no count: runs until stopped"
        );
        assert_eq!(
            r.measurements.len(),
            MEASUREMENTS_KEPT,
            "history is bounded"
        );

        let mut r = MetricResult::default();
        record(&mut r, &m, measurement(Inconclusive, t));
        assert_eq!(r.phase, Inconclusive);
    }

    #[test]
    fn next_measurement_follows_delay_interval_and_error_retry() {
        let mut m = metric(None, None);
        m.initial_delay = Duration::from_secs(30);
        m.interval = Some(Duration::from_secs(60));
        m.count = Some(3);
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut run = new_run("step-2", "abc", std::slice::from_ref(&m), now);
        let at = |run: &AnalysisRunStatus| {
            next_measurement(run, &run.metrics[0], &m).map(|t| t.to_string())
        };
        assert_eq!(at(&run).as_deref(), Some("2026-01-01T00:00:30Z"));
        assert!(due(&run, std::slice::from_ref(&m), now).is_empty());
        let later: Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
        assert_eq!(due(&run, std::slice::from_ref(&m), later).len(), 1);
        record(
            &mut run.metrics[0],
            &m,
            measurement(Successful, "2026-01-01T00:00:31Z"),
        );
        assert_eq!(at(&run).as_deref(), Some("2026-01-01T00:01:31Z"));
        record(
            &mut run.metrics[0],
            &m,
            measurement(Error, "2026-01-01T00:01:31Z"),
        );
        assert_eq!(
            at(&run).as_deref(),
            Some("2026-01-01T00:01:41Z"),
            "errors retry after 10s"
        );
        record(
            &mut run.metrics[0],
            &m,
            measurement(Successful, "2026-01-01T00:01:41Z"),
        );
        record(
            &mut run.metrics[0],
            &m,
            measurement(Successful, "2026-01-01T00:02:41Z"),
        );
        assert_eq!(at(&run), None);
        assess_run(&mut run);
        assert_eq!(run.phase, Successful);
    }

    #[test]
    fn a_missing_label_or_annotation_reads_as_empty_as_in_argo() {
        let meta: ObjectMeta =
            serde_json::from_value(serde_json::json!({"name": "web", "labels": {"rev": "2"}}))
                .unwrap();
        assert_eq!(field_value(&meta, "metadata.labels['rev']").unwrap(), "2");
        assert_eq!(field_value(&meta, "metadata.labels['team']").unwrap(), "");
        assert_eq!(field_value(&meta, "metadata.annotations['a']").unwrap(), "");
        assert!(field_value(&meta, "spec.replicas").is_err());
    }

    #[test]
    fn a_job_metric_is_checked_as_a_job_spec() {
        let resolve = |yaml: &str| {
            let m: crate::types::Metric = serde_yaml::from_str(yaml).unwrap();
            let mut errors = Vec::new();
            let resolved = resolve_metric("m", &m, &BTreeMap::new(), &mut errors);
            (resolved, errors.join("\n"))
        };
        let (ok, _) = resolve(
            "{name: smoke, provider: {job: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: s, image: 'smoke:1', args: [--fast]}]}}}}}}",
        );
        let ok = ok.unwrap();
        assert!(matches!(ok.provider, Provider::Job(_)));
        assert_eq!(ok.display_query, "job: smoke:1 --fast");
        for (yaml, why) in [
            (
                "{name: s, provider: {job: {spec: {template: {spec: {containers: [{name: s, image: i}]}}}}}}",
                "m.provider.job.spec.template.spec.restartPolicy: must be Never or OnFailure for a Job, got \"Always\"",
            ),
            (
                "{name: s, provider: {job: {spec: {template: {spec: {restartPolicy: Never, containers: []}}}}}}",
                "m.provider.job.spec.template.spec.containers: required",
            ),
            (
                "{name: s, provider: {job: {spec: {template: 3}}}}",
                "m.provider.job.spec: not a batch/v1 JobSpec",
            ),
            (
                "{name: s, successCondition: 'result == 1', provider: {job: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: s, image: i}]}}}}}}",
                "m: a job metric is judged by its Job",
            ),
        ] {
            let (resolved, errors) = resolve(yaml);
            assert!(resolved.is_none() && errors.contains(why), "{errors}");
        }
    }
}
