//! Turns a `RolloutSpec` into the canary plan the decision works on, or
//! into every reason it cannot be run. Unsupported Argo features are named,
//! never ignored.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::types::{AlbDirect, CanaryStrategy, RolloutAnalysis, RolloutSpec, Step, TrafficRouting};

pub const DEFAULT_ANNOTATION_PREFIX: &str = "alb.ingress.kubernetes.io";
const DEFAULT_SCALE_DOWN_DELAY: u64 = 30;
const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// A validated canary rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub replicas: i32,
    pub steps: Vec<StepKind>,
    pub canary_service: String,
    pub stable_service: String,
    pub alb: Option<Alb>,
    pub scale_down_delay: Duration,
    pub abort_scale_down_delay: Duration,
    pub revision_history_limit: i32,
    pub paused: bool,
    pub min_ready_seconds: i32,
    /// `spec.restartAt`: pods created before it are to be restarted.
    pub restart_at: Option<Timestamp>,
    /// `strategy.canary.analysis`: runs from the step index `starting_step`.
    pub background: Option<RolloutAnalysis>,
}

impl Plan {
    /// Every analysis of the plan: `(run name, field path, analysis)`.
    pub fn analyses(&self) -> impl Iterator<Item = (String, String, &RolloutAnalysis)> {
        let steps = self.steps.iter().enumerate().filter_map(|(i, s)| match s {
            StepKind::Analysis(a) => Some((
                format!("step-{i}"),
                format!("spec.strategy.canary.steps[{i}].analysis"),
                a,
            )),
            _ => None,
        });
        let background = self.background.iter().map(|a| {
            (
                BACKGROUND.to_string(),
                "spec.strategy.canary.analysis".to_string(),
                a,
            )
        });
        steps.chain(background)
    }
}

/// The name of the background analysis run.
pub const BACKGROUND: &str = "background";

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    SetWeight(i32),
    /// `None`: wait for promote.
    Pause(Option<Duration>),
    Analysis(RolloutAnalysis),
}

/// ALB routing: through the AWS Load Balancer Controller's Ingress
/// annotation, or (`direct`) on a listener or rule set through the ELBv2 API.
#[derive(Debug, Clone, PartialEq)]
pub struct Alb {
    pub ingress: String,
    pub service_port: i32,
    pub root_service: String,
    pub annotation_prefix: String,
    pub direct: Option<AlbDirect>,
}

impl Alb {
    /// `<prefix>/actions.<rootService>`
    pub fn action_key(&self) -> String {
        format!("{}/actions.{}", self.annotation_prefix, self.root_service)
    }
}

/// Validates `spec`; the error lists every problem with its field path.
pub fn validate(spec: &RolloutSpec) -> Result<Plan, Vec<String>> {
    let mut errors = Vec::new();
    unsupported(
        &mut errors,
        "spec",
        &[
            (
                "strategy.blueGreen",
                spec.strategy.blue_green.is_some(),
                "the blueGreen strategy (use canary)",
            ),
            (
                "workloadRef",
                spec.workload_ref.is_some(),
                "referencing a Deployment (put the pod template in the Rollout)",
            ),
            (
                "progressDeadlineSeconds",
                spec.progress_deadline_seconds.is_some(),
                "a progress deadline",
            ),
        ],
    );
    let Some(canary) = &spec.strategy.canary else {
        errors.push("spec.strategy.canary: required (the only supported strategy)".into());
        return Err(errors);
    };
    let c = "spec.strategy.canary";
    unsupported(
        &mut errors,
        c,
        &[
            (
                "maxSurge",
                canary.max_surge.is_some(),
                "maxSurge (canary replicas follow the weight)",
            ),
            (
                "maxUnavailable",
                canary.max_unavailable.is_some(),
                "maxUnavailable",
            ),
            ("pingPong", canary.ping_pong.is_some(), "ping-pong services"),
            (
                "canaryMetadata",
                canary.canary_metadata.is_some(),
                "canaryMetadata",
            ),
            (
                "stableMetadata",
                canary.stable_metadata.is_some(),
                "stableMetadata",
            ),
            (
                "antiAffinity",
                canary.anti_affinity.is_some(),
                "antiAffinity",
            ),
            (
                "dynamicStableScale",
                canary.dynamic_stable_scale == Some(true),
                "dynamicStableScale",
            ),
        ],
    );

    let replicas = spec.replicas.unwrap_or(1);
    if replicas < 0 {
        errors.push(format!("spec.replicas: must be 0 or more, got {replicas}"));
    }
    for (field, value) in [
        ("canaryService", &canary.canary_service),
        ("stableService", &canary.stable_service),
    ] {
        if value.is_empty() {
            errors.push(format!("{c}.{field}: required"));
        }
    }
    if !canary.canary_service.is_empty() && canary.canary_service == canary.stable_service {
        errors.push(format!(
            "{c}: canaryService and stableService must be different Services"
        ));
    }
    let alb = canary.traffic_routing.as_ref().and_then(|tr| {
        let t = format!("{c}.trafficRouting");
        traffic_routing(&t, tr, &canary.stable_service, &mut errors)
    });
    let steps = steps(c, canary, &mut errors);
    if let Some(a) = &canary.analysis {
        check_analysis(&format!("{c}.analysis"), a, &mut errors);
        let start = a.starting_step.unwrap_or(0);
        if !(0..=steps.len() as i32).contains(&start) {
            errors.push(format!(
                "{c}.analysis.startingStep: must be a step index from 0 to {}, got {start}",
                steps.len()
            ));
        }
    }
    let delay = |field: &str, v: Option<i32>, errors: &mut Vec<String>| match v {
        Some(s) if s < 0 => {
            errors.push(format!("{c}.{field}: must be 0 or more seconds, got {s}"));
            Duration::ZERO
        }
        Some(s) => Duration::from_secs(s as u64),
        None => Duration::from_secs(DEFAULT_SCALE_DOWN_DELAY),
    };
    let scale_down_delay = delay(
        "scaleDownDelaySeconds",
        canary.scale_down_delay_seconds,
        &mut errors,
    );
    let abort_scale_down_delay = delay(
        "abortScaleDownDelaySeconds",
        canary.abort_scale_down_delay_seconds,
        &mut errors,
    );
    let restart_at = match spec.restart_at.as_deref().map(str::parse::<Timestamp>) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => {
            errors.push(format!(
                "spec.restartAt: expected an RFC 3339 time like 2026-01-01T12:00:00Z, got {:?}",
                spec.restart_at.as_deref().unwrap_or_default()
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Plan {
        replicas,
        steps,
        canary_service: canary.canary_service.clone(),
        stable_service: canary.stable_service.clone(),
        alb,
        scale_down_delay,
        abort_scale_down_delay,
        revision_history_limit: spec
            .revision_history_limit
            .unwrap_or(DEFAULT_HISTORY_LIMIT)
            .max(0),
        paused: spec.paused.unwrap_or(false),
        min_ready_seconds: spec.min_ready_seconds.unwrap_or(0).max(0),
        restart_at,
        background: canary.analysis.clone(),
    })
}

/// Argo fields gantry does not support, named when set: `(field under
/// prefix, set, what)`.
fn unsupported(errors: &mut Vec<String>, prefix: &str, fields: &[(&str, bool, &str)]) {
    for (field, set, what) in fields {
        if *set {
            errors.push(format!(
                "{prefix}.{field}: {what} is not supported by gantry"
            ));
        }
    }
}

/// `trafficRouting` (at path `t`): ALB only, through an Ingress or direct.
fn traffic_routing(
    t: &str,
    tr: &TrafficRouting,
    stable_service: &str,
    errors: &mut Vec<String>,
) -> Option<Alb> {
    let router = "this traffic router (only alb is supported)";
    unsupported(
        errors,
        t,
        &[
            ("nginx", tr.nginx.is_some(), router),
            ("istio", tr.istio.is_some(), router),
            ("smi", tr.smi.is_some(), router),
            ("traefik", tr.traefik.is_some(), router),
            ("plugins", tr.plugins.is_some(), router),
            ("managedRoutes", tr.managed_routes.is_some(), router),
        ],
    );
    let Some(alb) = &tr.alb else {
        errors.push(format!(
            "{t}.alb: required (the only supported traffic router)"
        ));
        return None;
    };
    unsupported(
        errors,
        &format!("{t}.alb"),
        &[
            (
                "ingresses",
                alb.ingresses.is_some(),
                "several ingresses (use ingress)",
            ),
            (
                "stickinessConfig",
                alb.stickiness_config.is_some(),
                "target group stickiness",
            ),
        ],
    );
    match &alb.direct {
        Some(d) => check_direct(&format!("{t}.alb"), alb, d, errors),
        None => {
            if alb.ingress.is_empty() {
                errors.push(format!("{t}.alb.ingress: required (or direct)"));
            }
            if !(1..=65535).contains(&alb.service_port) {
                errors.push(format!(
                    "{t}.alb.servicePort: must be a port number, got {}",
                    alb.service_port
                ));
            }
        }
    }
    Some(Alb {
        ingress: alb.ingress.clone(),
        service_port: alb.service_port,
        root_service: alb
            .root_service
            .clone()
            .unwrap_or_else(|| stable_service.to_string()),
        annotation_prefix: alb
            .annotation_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_ANNOTATION_PREFIX.to_string()),
        direct: alb.direct.clone(),
    })
}

/// The steps, each of exactly one kind (paths under `c`).
fn steps(c: &str, canary: &CanaryStrategy, errors: &mut Vec<String>) -> Vec<StepKind> {
    let mut steps = Vec::new();
    for (i, step) in canary.steps.iter().enumerate() {
        match step_kind(step) {
            Ok(kind) => {
                if let StepKind::Analysis(a) = &kind {
                    check_analysis(&format!("{c}.steps[{i}].analysis"), a, errors);
                    if a.starting_step.is_some() {
                        errors.push(format!(
                            "{c}.steps[{i}].analysis.startingStep: only for the background analysis"
                        ));
                    }
                }
                steps.push(kind);
            }
            Err(e) => errors.push(format!("{c}.steps[{i}]: {e}")),
        }
    }
    steps
}

fn step_kind(step: &Step) -> Result<StepKind, String> {
    let unsupported = [
        ("experiment", step.experiment.is_some()),
        ("setCanaryScale", step.set_canary_scale.is_some()),
        ("setHeaderRoute", step.set_header_route.is_some()),
        ("setMirrorRoute", step.set_mirror_route.is_some()),
        ("plugin", step.plugin.is_some()),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(format!("{name} steps are not supported by gantry"));
    }
    let kinds = [
        step.set_weight.is_some(),
        step.pause.is_some(),
        step.analysis.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err("exactly one of setWeight, pause or analysis must be set".into());
    }
    if let Some(w) = step.set_weight {
        if !(0..=100).contains(&w) {
            return Err(format!("setWeight must be between 0 and 100, got {w}"));
        }
        return Ok(StepKind::SetWeight(w));
    }
    if let Some(p) = &step.pause {
        return match &p.duration {
            None => Ok(StepKind::Pause(None)),
            Some(d) => parse_duration(d)
                .map(|d| StepKind::Pause(Some(d)))
                .map_err(|e| format!("pause.duration: {e}")),
        };
    }
    Ok(StepKind::Analysis(
        step.analysis.clone().unwrap_or_default(),
    ))
}

fn check_direct(
    path: &str,
    alb: &crate::types::AlbTrafficRouting,
    d: &AlbDirect,
    errors: &mut Vec<String>,
) {
    if !alb.ingress.is_empty() {
        errors.push(format!(
            "{path}: ingress and direct are exclusive (direct sets the weights itself)"
        ));
    }
    if d.listener_arn.is_some() == d.rule_arn.is_some() {
        errors.push(format!(
            "{path}.direct: give exactly one of listenerArn or ruleArn"
        ));
    }
    let arns = [
        ("listenerArn", d.listener_arn.as_deref()),
        ("ruleArn", d.rule_arn.as_deref()),
        (
            "stableTargetGroupArn",
            Some(d.stable_target_group_arn.as_str()),
        ),
        (
            "canaryTargetGroupArn",
            Some(d.canary_target_group_arn.as_str()),
        ),
    ];
    for (field, value) in arns {
        if let Some(v) = value
            && !v.starts_with("arn:")
        {
            errors.push(format!(
                "{path}.direct.{field}: expected an ARN (arn:aws:elasticloadbalancing:…), got {v:?}"
            ));
        }
    }
    if d.stable_target_group_arn == d.canary_target_group_arn {
        errors.push(format!(
            "{path}.direct: stableTargetGroupArn and canaryTargetGroupArn must differ"
        ));
    }
}

fn check_analysis(path: &str, a: &RolloutAnalysis, errors: &mut Vec<String>) {
    if a.templates.is_empty() {
        errors.push(format!(
            "{path}.templates: at least one template is required"
        ));
    }
    for (i, t) in a.templates.iter().enumerate() {
        if t.template_name.is_empty() {
            errors.push(format!("{path}.templates[{i}].templateName: required"));
        }
        if t.cluster_scope == Some(true) {
            errors.push(format!("{path}.templates[{i}].clusterScope: cluster-scoped templates are not supported by gantry"));
        }
    }
    for (i, arg) in a.args.iter().enumerate() {
        let from = arg.value_from.as_ref();
        if from.is_some_and(|f| f.secret_key_ref.is_some()) {
            errors.push(format!(
                "{path}.args[{i}].valueFrom.secretKeyRef: only AnalysisTemplate args read Secrets"
            ));
        }
        if arg.value.is_some() == from.is_some() {
            errors.push(format!(
                "{path}.args[{i}] ({}): give exactly one of value or valueFrom",
                arg.name
            ));
        }
    }
}

/// `30s`, `5m`, `1h`, `1h30m`, or a number of seconds.
pub fn parse_duration(d: &IntOrString) -> Result<Duration, String> {
    let bad = |s: &str| format!("expected seconds or a duration like 30s, 5m, 1h, got {s:?}");
    match d {
        IntOrString::Int(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
        IntOrString::Int(n) => Err(bad(&n.to_string())),
        IntOrString::String(s) => {
            if let Ok(n) = s.parse::<u64>() {
                return Ok(Duration::from_secs(n));
            }
            let mut total = 0u64;
            let mut digits = String::new();
            for ch in s.chars() {
                if ch.is_ascii_digit() {
                    digits.push(ch);
                    continue;
                }
                let unit = match ch {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    _ => return Err(bad(s)),
                };
                let n: u64 = digits.parse().map_err(|_| bad(s))?;
                total += n * unit;
                digits.clear();
            }
            if !digits.is_empty() || s.is_empty() {
                return Err(bad(s));
            }
            Ok(Duration::from_secs(total))
        }
    }
}
