//! Turns a `RolloutSpec` into the canary plan the decision works on, or
//! into every reason it cannot be run. Unsupported Argo features are named,
//! never ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

mod header_routes;
pub use header_routes::HeaderRoute;

use crate::types::{
    AlbDirect, AlbTrafficRouting, CanaryStrategy, POD_TEMPLATE_HASH, PingPong, PodMetadata,
    Rollout, RolloutAnalysis, RolloutSpec, RolloutStatus, SetCanaryScale, Step, TrafficRouting,
    WorkloadScaleDown,
};

pub const DEFAULT_ANNOTATION_PREFIX: &str = "alb.ingress.kubernetes.io";
const DEFAULT_SCALE_DOWN_DELAY: u64 = 30;
const DEFAULT_HISTORY_LIMIT: i32 = 10;
const DEFAULT_PROGRESS_DEADLINE: i32 = 600;

/// A validated canary rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub replicas: i32,
    pub steps: Vec<StepKind>,
    /// The Services pointed at each role's ReplicaSet; empty when not
    /// named (a basic canary may go without; traffic routing needs both).
    /// With `pingPong`, the ping and pong Services in their current roles
    /// (see `plan_of`).
    pub canary_service: String,
    pub stable_service: String,
    pub ping_pong: Option<PingPong>,
    pub alb: Option<Alb>,
    /// `dynamicStableScale` (with `alb`).
    pub dynamic_stable_scale: bool,
    pub scale_down_delay: Duration,
    /// `scaleDownDelayRevisionLimit`: old ReplicaSets that may wait out
    /// the delay at once (None: all).
    pub scale_down_revision_limit: Option<usize>,
    pub abort_scale_down_delay: Duration,
    pub revision_history_limit: i32,
    /// `rollbackWindow.revisions` (0: none).
    pub rollback_window: usize,
    pub paused: bool,
    pub min_ready_seconds: i32,
    /// `progressDeadlineSeconds`: no progress for this long is Degraded.
    pub progress_deadline: Duration,
    /// `progressDeadlineAbort`: and aborts a canary.
    pub progress_deadline_abort: bool,
    /// `spec.restartAt`: pods created before it are to be restarted.
    pub restart_at: Option<Timestamp>,
    /// `strategy.canary.analysis`: runs from the step index `starting_step`.
    pub background: Option<RolloutAnalysis>,
    /// `canaryMetadata` / `stableMetadata`: on each role's pods.
    pub canary_metadata: PodMetadata,
    pub stable_metadata: PodMetadata,
    /// Pods above `replicas` / available pods below it a basic canary may
    /// use while it moves (resolved from `maxSurge` / `maxUnavailable`).
    pub max_surge: i32,
    pub max_unavailable: i32,
    /// `workloadRef`: the Deployment the pod template comes from.
    pub workload: Option<Workload>,
}

/// `spec.workloadRef`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub deployment: String,
    pub scale_down: WorkloadScaleDown,
}

impl Plan {
    /// The Services the Rollout names (none, one or both).
    pub fn services(&self) -> impl Iterator<Item = &str> {
        [self.stable_service.as_str(), self.canary_service.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
    }

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
    SetCanaryScale(CanaryScale),
    SetHeaderRoute(HeaderRoute),
}

/// `setCanaryScale`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryScale {
    Replicas(i32),
    /// A share of `replicas`, as a setWeight's pods.
    Weight(i32),
    MatchTrafficWeight,
}

impl Plan {
    /// The canary's pods while step `index` runs with `weight` in force:
    /// the last setCanaryScale before it, else the weight's share.
    pub fn canary_pods(&self, index: usize, weight: i32) -> i32 {
        let scale = self.steps[..index.min(self.steps.len())]
            .iter()
            .rev()
            .find_map(|s| match s {
                StepKind::SetCanaryScale(scale) => Some(*scale),
                _ => None,
            });
        match scale {
            Some(CanaryScale::Replicas(n)) => n,
            Some(CanaryScale::Weight(w)) => crate::decide::canary_replicas(self.replicas, w),
            Some(CanaryScale::MatchTrafficWeight) | None => {
                crate::decide::canary_replicas(self.replicas, weight)
            }
        }
    }
}

/// ALB routing: through the AWS Load Balancer Controller's Ingress
/// annotation, or (`direct`) on a listener or rule set through the ELBv2 API.
#[derive(Debug, Clone, PartialEq)]
pub struct Alb {
    /// The Ingresses carrying the weights (empty in direct mode).
    pub ingresses: Vec<String>,
    /// `trafficRouting.managedRoutes`: the header routes, in precedence order.
    pub managed_routes: Vec<String>,
    pub service_port: i32,
    pub root_service: String,
    pub annotation_prefix: String,
    pub direct: Option<AlbDirect>,
    pub gates: Gates,
    /// `stickinessConfig` when enabled: how long a client stays with the
    /// target group it was sent to.
    pub stickiness: Option<Duration>,
}

/// `alb.targetHealth`, validated: what the spec fixes; the rest defaults
/// from the Ingress (`Gates::settle`, `Gates::drain`).
#[derive(Debug, Clone, PartialEq)]
pub struct Gates {
    pub timeout: Duration,
    pub settle: Option<Duration>,
    pub drain: Option<Duration>,
}

const DEFAULT_GATE_TIMEOUT: u64 = 300;
/// The Ingress annotations (after `<prefix>/`) the gates' defaults read.
const HEALTH_CHECK_INTERVAL: &str = "healthcheck-interval-seconds";
const HEALTHY_THRESHOLD: &str = "healthy-threshold-count";
const TARGET_GROUP_ATTRIBUTES: &str = "target-group-attributes";
pub const GATE_ANNOTATIONS: [&str; 3] = [
    HEALTH_CHECK_INTERVAL,
    HEALTHY_THRESHOLD,
    TARGET_GROUP_ATTRIBUTES,
];
/// The LB controller's health-check defaults: every 15 s, healthy after 2.
const DEFAULT_HEALTH_CHECK_INTERVAL: u64 = 15;
const DEFAULT_HEALTHY_THRESHOLD: u64 = 2;
/// AWS's default `deregistration_delay.timeout_seconds`.
const DEFAULT_DEREGISTRATION_DELAY: u64 = 300;

impl Default for Gates {
    fn default() -> Gates {
        Gates {
            timeout: Duration::from_secs(DEFAULT_GATE_TIMEOUT),
            settle: None,
            drain: None,
        }
    }
}

impl Gates {
    /// Without the ELBv2 API: how long after the pods are ready behind a
    /// Service the ALB may take to find them healthy: the spec's, else the
    /// Ingress's health-check interval × healthy threshold.
    pub fn settle(&self, alb: &Alb, ingress: &BTreeMap<String, String>) -> Duration {
        self.settle.unwrap_or_else(|| {
            let number = |name: &str, default: u64| {
                ingress
                    .get(&format!("{}/{name}", alb.annotation_prefix))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(default)
            };
            Duration::from_secs(
                number(HEALTH_CHECK_INTERVAL, DEFAULT_HEALTH_CHECK_INTERVAL)
                    * number(HEALTHY_THRESHOLD, DEFAULT_HEALTHY_THRESHOLD),
            )
        })
    }

    /// Without the ELBv2 API: how long a pod that left a target group may
    /// still get requests: the spec's, else the Ingress's
    /// `deregistration_delay.timeout_seconds`, else AWS's default.
    pub fn drain(&self, alb: &Alb, ingress: &BTreeMap<String, String>) -> Duration {
        self.drain.unwrap_or_else(|| {
            let attributes = ingress
                .get(&format!(
                    "{}/{TARGET_GROUP_ATTRIBUTES}",
                    alb.annotation_prefix
                ))
                .map(String::as_str)
                .unwrap_or_default();
            let seconds = attributes
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim() == "deregistration_delay.timeout_seconds")
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(DEFAULT_DEREGISTRATION_DELAY);
            Duration::from_secs(seconds)
        })
    }
}

impl Alb {
    /// `<prefix>/actions.<rootService>`
    pub fn action_key(&self) -> String {
        format!("{}/actions.{}", self.annotation_prefix, self.root_service)
    }
}

/// The plan of `rollout`: its spec validated, the ping and pong Services in
/// the roles its status gives them.
pub fn plan_of(rollout: &Rollout) -> Result<Plan, Vec<String>> {
    Ok(validate(&rollout.spec)?.in_roles(rollout.status.as_ref()))
}

impl Plan {
    /// With pingPong, the ping and pong Services in the roles `status`
    /// gives them (absent: pong is stable).
    pub fn in_roles(mut self, status: Option<&RolloutStatus>) -> Plan {
        if let Some(pp) = &self.ping_pong {
            let stable_ping =
                status.and_then(|s| s.canary.stable_ping_pong.as_deref()) == Some(PING);
            let (stable, canary) = match stable_ping {
                true => (&pp.ping_service, &pp.pong_service),
                false => (&pp.pong_service, &pp.ping_service),
            };
            self.stable_service = stable.clone();
            self.canary_service = canary.clone();
        }
        self
    }
}

/// `status.canary.stablePingPong` values.
pub const PING: &str = "ping";
pub const PONG: &str = "pong";

/// `pingPong`: with ALB routing through `rootService` (the stable Service
/// changes name), two different Services.
fn ping_pong(c: &str, canary: &CanaryStrategy, errors: &mut Vec<String>) -> Option<PingPong> {
    let pp = canary.ping_pong.as_ref()?;
    let p = format!("{c}.pingPong");
    for (field, value) in [
        ("pingService", &pp.ping_service),
        ("pongService", &pp.pong_service),
    ] {
        if value.is_empty() {
            errors.push(format!("{p}.{field}: required"));
        }
    }
    if !pp.ping_service.is_empty() && pp.ping_service == pp.pong_service {
        errors.push(format!(
            "{p}: pingService and pongService must be different Services"
        ));
    }
    let alb = canary.traffic_routing.as_ref().and_then(|t| t.alb.as_ref());
    match alb {
        None => errors.push(format!(
            "{p}: needs trafficRouting.alb (the roles swap between two weighted target groups)"
        )),
        // Direct mode names the two target groups by ARN, in fixed roles.
        Some(a) if a.direct.is_some() => errors.push(format!(
            "{p}: not with trafficRouting.alb.direct (its target groups keep their roles; pingPong swaps them)"
        )),
        Some(a) if a.root_service.as_deref().unwrap_or_default().is_empty() => {
            errors.push(format!(
                "{c}.trafficRouting.alb.rootService: required with pingPong (the Ingress rule's Service cannot follow the stable role)"
            ))
        }
        Some(_) => {}
    }
    Some(pp.clone())
}

/// Validates `spec`; the error lists every problem with its field path.
pub fn validate(spec: &RolloutSpec) -> Result<Plan, Vec<String>> {
    let mut errors = Vec::new();
    let Some(canary) = &spec.strategy.canary else {
        errors.push(match spec.strategy.blue_green {
            Some(_) => {
                "spec.strategy.blueGreen: the blueGreen strategy is not supported by gantry: \
                 use strategy.canary (setWeight and pause steps)"
                    .into()
            }
            None => "spec.strategy.canary: required (the only supported strategy)".into(),
        });
        return Err(errors);
    };
    if spec.strategy.blue_green.is_some() {
        errors.push(
            "spec.strategy: give canary or blueGreen, not both (only canary is supported)".into(),
        );
    }
    let c = "spec.strategy.canary";
    unsupported(
        &mut errors,
        c,
        &[(
            "antiAffinity",
            canary.anti_affinity.is_some(),
            "antiAffinity",
        )],
    );
    let dynamic_stable_scale = canary.dynamic_stable_scale == Some(true);
    if dynamic_stable_scale && canary.traffic_routing.is_none() {
        errors.push(format!(
            "{c}.dynamicStableScale: needs trafficRouting (without it the stable already shrinks as the canary grows)"
        ));
    }
    if dynamic_stable_scale && canary.scale_down_delay_seconds.is_some() {
        errors.push(format!(
            "{c}.dynamicStableScale: not with scaleDownDelaySeconds (the stable is already down to its share when the canary is promoted), as in Argo"
        ));
    }

    let replicas = spec.replicas.unwrap_or(1);
    if replicas < 0 {
        errors.push(format!("spec.replicas: must be 0 or more, got {replicas}"));
    }
    // A basic canary may name either Service, both or neither (a Service
    // of the user's then selects both ReplicaSets, and the weight is the
    // canary's share of the pods); traffic routing weighs the two.
    if canary.traffic_routing.is_some() && canary.ping_pong.is_none() {
        for (field, value) in [
            ("canaryService", &canary.canary_service),
            ("stableService", &canary.stable_service),
        ] {
            if value.is_empty() {
                errors.push(format!(
                    "{c}.{field}: required with trafficRouting (the ALB weighs a target group per Service; create one and name it here)"
                ));
            }
        }
    }
    if !canary.canary_service.is_empty() && canary.canary_service == canary.stable_service {
        errors.push(format!(
            "{c}: canaryService and stableService must be different Services"
        ));
    }
    let ping_pong = ping_pong(c, canary, &mut errors);
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
    let timing = timing(spec, canary, &mut errors);
    let (max_surge, max_unavailable) = surge_and_unavailable(c, canary, replicas, &mut errors);
    let (canary_metadata, stable_metadata) = role_metadata(spec, canary, &mut errors);
    let workload = workload(spec, &mut errors);
    let rollback_window = rollback_window(spec, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let plan = Plan {
        replicas,
        steps,
        canary_service: canary.canary_service.clone(),
        stable_service: canary.stable_service.clone(),
        ping_pong,
        alb,
        dynamic_stable_scale,
        scale_down_delay: timing.scale_down_delay,
        scale_down_revision_limit: timing.scale_down_revision_limit,
        abort_scale_down_delay: timing.abort_scale_down_delay,
        revision_history_limit: spec
            .revision_history_limit
            .unwrap_or(DEFAULT_HISTORY_LIMIT)
            .max(0),
        rollback_window,
        paused: spec.paused.unwrap_or(false),
        min_ready_seconds: timing.min_ready_seconds,
        progress_deadline: timing.progress_deadline,
        progress_deadline_abort: spec.progress_deadline_abort.unwrap_or(false),
        restart_at: timing.restart_at,
        background: canary.analysis.clone(),
        canary_metadata,
        stable_metadata,
        max_surge,
        max_unavailable,
        workload,
    }
    // With pingPong the roles follow the status (`plan_of`); pong is
    // stable until a promotion says otherwise, as in Argo.
    .in_roles(None);
    check_canary_scale(c, &plan, &mut errors);
    header_routes::check_header_routes(c, &plan, &mut errors);
    match errors.is_empty() {
        true => Ok(plan),
        false => Err(errors),
    }
}

/// The Rollout's durations and times, validated.
struct Timing {
    scale_down_delay: Duration,
    scale_down_revision_limit: Option<usize>,
    abort_scale_down_delay: Duration,
    min_ready_seconds: i32,
    progress_deadline: Duration,
    restart_at: Option<Timestamp>,
}

fn timing(spec: &RolloutSpec, canary: &CanaryStrategy, errors: &mut Vec<String>) -> Timing {
    let c = "spec.strategy.canary";
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
        errors,
    );
    let abort_scale_down_delay = delay(
        "abortScaleDownDelaySeconds",
        canary.abort_scale_down_delay_seconds,
        errors,
    );
    let scale_down_revision_limit = match canary.scale_down_delay_revision_limit {
        Some(n) if n < 0 => {
            errors.push(format!(
                "{c}.scaleDownDelayRevisionLimit: must be 0 or more ReplicaSets, got {n}"
            ));
            None
        }
        other => other.map(|n| n as usize),
    };
    let min_ready_seconds = spec.min_ready_seconds.unwrap_or(0);
    if min_ready_seconds < 0 {
        errors.push(format!(
            "spec.minReadySeconds: must be 0 or more, got {min_ready_seconds}"
        ));
    }
    let progress_deadline = spec
        .progress_deadline_seconds
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE);
    if progress_deadline <= min_ready_seconds.max(0) {
        errors.push(format!(
            "spec.progressDeadlineSeconds: must be more than minReadySeconds ({min_ready_seconds}), got {progress_deadline}"
        ));
    }
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
    Timing {
        scale_down_delay,
        scale_down_revision_limit,
        abort_scale_down_delay,
        min_ready_seconds,
        progress_deadline: Duration::from_secs(progress_deadline.max(1) as u64),
        restart_at,
    }
}

/// `rollbackWindow.revisions`: 0 or more.
fn rollback_window(spec: &RolloutSpec, errors: &mut Vec<String>) -> usize {
    let revisions = spec.rollback_window.as_ref().map_or(0, |w| w.revisions);
    if revisions < 0 {
        errors.push(format!(
            "spec.rollbackWindow.revisions: must be 0 or more, got {revisions}"
        ));
    }
    revisions.max(0) as usize
}

/// `canaryMetadata` and `stableMetadata`, validated.
fn role_metadata(
    spec: &RolloutSpec,
    canary: &CanaryStrategy,
    errors: &mut Vec<String>,
) -> (PodMetadata, PodMetadata) {
    let c = "spec.strategy.canary";
    let selector_keys: Vec<&String> = spec
        .selector
        .match_labels
        .iter()
        .flat_map(|m| m.keys())
        .collect();
    let canary_metadata = pod_metadata(
        c,
        "canaryMetadata",
        &canary.canary_metadata,
        &selector_keys,
        errors,
    );
    let stable_metadata = pod_metadata(
        c,
        "stableMetadata",
        &canary.stable_metadata,
        &selector_keys,
        errors,
    );
    (canary_metadata, stable_metadata)
}

/// `maxSurge` (rounded up) and `maxUnavailable` (rounded down) as pod
/// counts of `replicas`; Argo's defaults are 25% each.
fn surge_and_unavailable(
    c: &str,
    canary: &CanaryStrategy,
    replicas: i32,
    errors: &mut Vec<String>,
) -> (i32, i32) {
    let default = IntOrString::String("25%".into());
    let mut count = |field: &str, v: Option<&IntOrString>, round_up: bool| {
        let v = v.unwrap_or(&default);
        let bad = |got: String| {
            format!("{c}.{field}: expected a number of pods or a percentage like 25%, got {got}")
        };
        match v {
            IntOrString::Int(n) if *n >= 0 => *n,
            IntOrString::Int(n) => {
                errors.push(bad(n.to_string()));
                0
            }
            IntOrString::String(s) => match s.strip_suffix('%').map(str::parse::<i32>) {
                Some(Ok(p)) if (0..=100).contains(&p) => {
                    let scaled = replicas * p;
                    if round_up {
                        (scaled + 99) / 100
                    } else {
                        scaled / 100
                    }
                }
                _ => match s.parse::<i32>() {
                    Ok(n) if n >= 0 => n,
                    _ => {
                        errors.push(bad(format!("{s:?}")));
                        0
                    }
                },
            },
        }
    };
    let surge = count("maxSurge", canary.max_surge.as_ref(), true);
    let unavailable = count("maxUnavailable", canary.max_unavailable.as_ref(), false);
    let zero = |v: Option<&IntOrString>| {
        matches!(v, Some(IntOrString::Int(0)))
            || matches!(v, Some(IntOrString::String(s)) if s == "0" || s == "0%")
    };
    if zero(canary.max_surge.as_ref()) && zero(canary.max_unavailable.as_ref()) {
        errors.push(format!(
            "{c}: maxSurge and maxUnavailable cannot both be 0 (nothing could move)"
        ));
    }
    (surge, unavailable.min(replicas))
}

/// Role metadata: its labels must leave the selector (and the hash label)
/// alone, or the pods would stop matching their ReplicaSet.
fn pod_metadata(
    c: &str,
    field: &str,
    metadata: &Option<PodMetadata>,
    selector_keys: &[&String],
    errors: &mut Vec<String>,
) -> PodMetadata {
    let metadata = metadata.clone().unwrap_or_default();
    for key in metadata.labels.keys() {
        if key == POD_TEMPLATE_HASH || selector_keys.contains(&key) {
            errors.push(format!(
                "{c}.{field}.labels.{key}: a selector label cannot change with the pod's role"
            ));
        }
    }
    for (kind, map) in [
        ("labels", &metadata.labels),
        ("annotations", &metadata.annotations),
    ] {
        if map.keys().any(String::is_empty) {
            errors.push(format!("{c}.{field}.{kind}: keys cannot be empty"));
        }
    }
    metadata
}

/// `workloadRef`: a Deployment, instead of `template` (and of `selector`,
/// which defaults to the Deployment's).
fn workload(spec: &RolloutSpec, errors: &mut Vec<String>) -> Option<Workload> {
    let has_template = spec.template != Default::default();
    let Some(w) = &spec.workload_ref else {
        if !has_template {
            errors.push("spec.template: required (or workloadRef)".into());
        }
        if spec.selector == Default::default() {
            errors.push("spec.selector: required (or workloadRef)".into());
        }
        return None;
    };
    if has_template {
        errors.push(
            "spec.template: give template or workloadRef, not both (the Deployment's template is used)"
                .into(),
        );
    }
    if (w.api_version.as_str(), w.kind.as_str()) != ("apps/v1", "Deployment") {
        errors.push(format!(
            "spec.workloadRef: only apiVersion apps/v1, kind Deployment is supported, got {}/{}",
            w.api_version, w.kind
        ));
    }
    if w.name.is_empty() {
        errors.push("spec.workloadRef.name: required".into());
    }
    Some(Workload {
        deployment: w.name.clone(),
        scale_down: w.scale_down.unwrap_or(WorkloadScaleDown::Never),
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
        ],
    );
    let Some(alb) = &tr.alb else {
        errors.push(format!(
            "{t}.alb: required (the only supported traffic router)"
        ));
        return None;
    };
    let stickiness = stickiness(t, alb, errors);
    let ingresses = ingresses(t, alb, errors);
    let root_service = alb
        .root_service
        .clone()
        .unwrap_or_else(|| stable_service.to_string());
    let managed_routes = header_routes::managed_routes(t, tr, &root_service, errors);
    match &alb.direct {
        Some(d) => check_direct(&format!("{t}.alb"), alb, d, errors),
        None => {
            if ingresses.is_empty() {
                errors.push(format!(
                    "{t}.alb.ingress: required (or ingresses, or direct)"
                ));
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
        ingresses,
        managed_routes,
        stickiness,
        service_port: alb.service_port,
        root_service,
        annotation_prefix: alb
            .annotation_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_ANNOTATION_PREFIX.to_string()),
        direct: alb.direct.clone(),
        gates: gates(&format!("{t}.alb.targetHealth"), alb, errors),
    })
}

/// `stickinessConfig`: 1 to 604800 seconds when enabled, as the ALB
/// takes it; written into the Ingress's forward action (not direct mode,
/// where the listener rule is the user's).
fn stickiness(t: &str, alb: &AlbTrafficRouting, errors: &mut Vec<String>) -> Option<Duration> {
    let s = alb.stickiness_config.as_ref().filter(|s| s.enabled)?;
    let path = format!("{t}.alb.stickinessConfig");
    if alb.direct.is_some() {
        errors.push(format!(
            "{path}: not with direct (set stickiness on your listener rule; gantry then cannot wait it out)"
        ));
    }
    if !(1..=604_800).contains(&s.duration_seconds) {
        errors.push(format!(
            "{path}.durationSeconds: must be 1 to 604800 seconds (7 days), got {}",
            s.duration_seconds
        ));
        return None;
    }
    Some(Duration::from_secs(s.duration_seconds as u64))
}

/// `ingress` or `ingresses` (not both), each named once.
fn ingresses(t: &str, alb: &AlbTrafficRouting, errors: &mut Vec<String>) -> Vec<String> {
    let Some(list) = &alb.ingresses else {
        return [&alb.ingress]
            .into_iter()
            .filter(|i| !i.is_empty())
            .cloned()
            .collect();
    };
    if !alb.ingress.is_empty() {
        errors.push(format!("{t}.alb: give ingress or ingresses, not both"));
    }
    if list.is_empty() {
        errors.push(format!("{t}.alb.ingresses: name at least one Ingress"));
    }
    for (i, name) in list.iter().enumerate() {
        if name.is_empty() {
            errors.push(format!("{t}.alb.ingresses[{i}]: empty name"));
        } else if list[..i].contains(name) {
            errors.push(format!("{t}.alb.ingresses[{i}]: {name:?} is named twice"));
        }
    }
    list.clone()
}

fn gates(path: &str, alb: &AlbTrafficRouting, errors: &mut Vec<String>) -> Gates {
    let th = alb.target_health.clone().unwrap_or_default();
    let mut seconds = |field: &str, v: Option<i32>| match v {
        Some(s) if s < 0 => {
            errors.push(format!(
                "{path}.{field}: must be 0 or more seconds, got {s}"
            ));
            None
        }
        other => other.map(|s| Duration::from_secs(s as u64)),
    };
    let timeout = seconds("timeoutSeconds", th.timeout_seconds)
        .unwrap_or(Duration::from_secs(DEFAULT_GATE_TIMEOUT));
    let settle = seconds("settleSeconds", th.settle_seconds);
    let drain = seconds("drainSeconds", th.drain_seconds);
    if timeout.is_zero() {
        errors.push(format!(
            "{path}.timeoutSeconds: must be more than 0 (a gate that gives up at once would abort every canary)"
        ));
    }
    Gates {
        timeout,
        settle,
        drain,
    }
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
        (
            "experiment",
            step.experiment.is_some(),
            "judge the canary itself with an analysis step (args valueFrom podTemplateHashValue: Latest)",
        ),
        (
            "setMirrorRoute",
            step.set_mirror_route.is_some(),
            "the ALB cannot mirror traffic (it forwards each request to one target group); send a share with setWeight, or chosen requests with setHeaderRoute",
        ),
        (
            "plugin",
            step.plugin.is_some(),
            "step plugins run code gantry does not load; gate on what the plugin checks with an analysis step (a web metric can call any HTTP endpoint), or remove the step",
        ),
    ];
    if let Some((name, _, instead)) = unsupported.iter().find(|(_, set, _)| *set) {
        return Err(format!(
            "{name} steps are not supported by gantry: {instead}"
        ));
    }
    let kinds = [
        step.set_weight.is_some(),
        step.pause.is_some(),
        step.analysis.is_some(),
        step.set_canary_scale.is_some(),
        step.set_header_route.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(
            "exactly one of setWeight, pause, analysis, setCanaryScale or setHeaderRoute must be set"
                .into(),
        );
    }
    if let Some(route) = &step.set_header_route {
        return header_routes::header_route(route).map(StepKind::SetHeaderRoute);
    }
    if let Some(scale) = &step.set_canary_scale {
        return canary_scale(scale).map(StepKind::SetCanaryScale);
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

fn canary_scale(scale: &SetCanaryScale) -> Result<CanaryScale, String> {
    let given = [
        scale.replicas.is_some(),
        scale.weight.is_some(),
        scale.match_traffic_weight == Some(true),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(
            "setCanaryScale: exactly one of replicas, weight or matchTrafficWeight: true must be set"
                .into(),
        );
    }
    match (scale.replicas, scale.weight) {
        (Some(n), _) if n < 0 => Err(format!(
            "setCanaryScale.replicas: must be 0 or more, got {n}"
        )),
        (Some(n), _) => Ok(CanaryScale::Replicas(n)),
        (_, Some(w)) if !(0..=100).contains(&w) => Err(format!(
            "setCanaryScale.weight: must be between 0 and 100, got {w}"
        )),
        (_, Some(w)) => Ok(CanaryScale::Weight(w)),
        _ => Ok(CanaryScale::MatchTrafficWeight),
    }
}

/// setCanaryScale needs traffic routing (without it the weight is the
/// pods), and no step may send weight to a canary scaled to no pods (the
/// ALB would answer 503 for its share).
fn check_canary_scale(c: &str, plan: &Plan, errors: &mut Vec<String>) {
    let mut weight = 0;
    for (i, step) in plan.steps.iter().enumerate() {
        match step {
            StepKind::SetCanaryScale(_) if plan.alb.is_none() => {
                errors.push(format!(
                    "{c}.steps[{i}]: setCanaryScale needs trafficRouting (without it the weight is the canary's share of the pods)"
                ));
                return;
            }
            StepKind::SetWeight(w) => weight = *w,
            _ => {}
        }
        if weight > 0 && plan.canary_pods(i + 1, weight) == 0 {
            errors.push(format!(
                "{c}.steps[{i}]: the canary carries {weight}% of the traffic while setCanaryScale gives it no pods (the ALB would answer 503 for that share)"
            ));
            return;
        }
    }
}

fn check_direct(
    path: &str,
    alb: &crate::types::AlbTrafficRouting,
    d: &AlbDirect,
    errors: &mut Vec<String>,
) {
    for (field, set) in [
        ("ingress", !alb.ingress.is_empty()),
        ("ingresses", alb.ingresses.is_some()),
    ] {
        if set {
            errors.push(format!(
                "{path}: {field} and direct are exclusive (direct sets the weights itself)"
            ));
        }
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
