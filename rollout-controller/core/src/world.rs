//! What the glue observes of one Rollout's world, in the shapes the
//! decision reads: ReplicaSets, pods, Services, the Ingress, the ALB as
//! the ELBv2 API shows it, and the measurements just taken.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::api::networking::v1::IngressRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;

use crate::alb::routes::HeaderCondition;
use crate::types::{AnalysisTemplateSpec, AwsResource, Measurement, PodMetadata, RolloutSpec};

/// A ReplicaSet owned by the Rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSetView {
    pub name: String,
    pub hash: String,
    /// `spec.replicas`
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    /// When it is due to be scaled to zero (the scale-down-deadline annotation).
    pub scale_down_at: Option<Timestamp>,
    pub created: Option<Timestamp>,
    /// The role metadata its pods carry (recorded on the ReplicaSet).
    pub pod_metadata: PodMetadata,
    /// Every container of its pod template has a preStop hook: a deleted
    /// pod keeps serving while the ALB deregisters it.
    pub stops_gracefully: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceView {
    pub name: String,
    /// The pod-template-hash in its selector, if any.
    pub hash: Option<String>,
    /// When the controller last pointed it at a ReplicaSet (its
    /// `gantry.dev/selected-at` annotation).
    pub selected_at: Option<Timestamp>,
    /// The pods behind it, as its EndpointSlices list them (what the AWS
    /// Load Balancer Controller registers in its target group).
    pub endpoints: Vec<EndpointView>,
}

/// One address of a Service's EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    /// The pod IP (a target's id for `target-type: ip`).
    pub ip: String,
    /// The pod's name (`targetRef`), which starts with its ReplicaSet's.
    pub pod: Option<String>,
    /// The EndpointSlice's `ready` condition: the pod is Ready and not
    /// terminating.
    pub ready: bool,
    /// The AWS Load Balancer Controller's readiness gate for this
    /// Service's target group (`target-health.elbv2.k8s.aws/<binding>`),
    /// when the pod carries it. None: no such gate (the pod was created
    /// before the Service selected it, or injection is off).
    pub health_gate: Option<HealthGate>,
}

/// A readiness gate's condition, as the LB controller last set it: true
/// once the pod's target passed its health checks in the group. The LB
/// controller updates it only while the pod is behind the Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthGate {
    pub healthy: bool,
    /// The condition's `lastTransitionTime`.
    pub since: Option<Timestamp>,
}

impl EndpointView {
    /// Whether the pod belongs to ReplicaSet `rs` (pods are named
    /// `<replicaset>-<suffix>` by the ReplicaSet controller).
    pub fn of(&self, rs: &str) -> bool {
        self.pod
            .as_deref()
            .and_then(|p| p.strip_prefix(rs))
            .is_some_and(|rest| rest.starts_with('-'))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngressView {
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    /// `spec.rules` (header routes add paths to them).
    pub rules: Vec<IngressRule>,
    /// The load balancer's DNS name from the Ingress status.
    pub hostname: Option<String>,
}

/// A pod of one of the Rollout's ReplicaSets (observed only while a
/// restart is pending).
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub name: String,
    /// Its ReplicaSet's pod-template-hash.
    pub hash: String,
    pub created: Timestamp,
    /// Deletion requested, not gone yet.
    pub terminating: bool,
}

/// The Deployment a `workloadRef` Rollout takes its pod template from.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadView {
    pub name: String,
    /// `spec.replicas`
    pub replicas: i32,
    pub selector: LabelSelector,
    pub template: PodTemplateSpec,
}

/// Everything observed about one Rollout's world.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub now: Timestamp,
    pub replica_sets: Vec<ReplicaSetView>,
    /// Only observed while `spec.restartAt` is pending.
    pub pods: Vec<PodView>,
    pub stable_service: Option<ServiceView>,
    pub canary_service: Option<ServiceView>,
    /// The Rollout's Ingresses that exist (ALB routing through Ingresses).
    pub ingresses: Vec<IngressView>,
    /// The AnalysisTemplates of the Rollout's namespace the plan references.
    pub templates: BTreeMap<String, AnalysisTemplateSpec>,
    /// Measurements just taken for the running analyses.
    pub measurements: Vec<Taken>,
    /// The ALB as the ELBv2 API shows it (or why it could not be read);
    /// `None` when AWS is not watched (verification off, no direct mode).
    pub alb: Option<Result<Observed, String>>,
    /// The `workloadRef` Deployment (None when there is none, or it is missing).
    pub workload: Option<WorkloadView>,
}

impl World {
    /// The pod template the Rollout runs: its own, or its Deployment's
    /// (None while that Deployment is missing).
    pub fn pod_template<'a>(&'a self, spec: &'a RolloutSpec) -> Option<&'a PodTemplateSpec> {
        match &spec.workload_ref {
            None => Some(&spec.template),
            Some(_) => self.workload.as_ref().map(|w| &w.template),
        }
    }

    /// The Rollout's selector; with a `workloadRef` and none of its own,
    /// the Deployment's.
    pub fn selector<'a>(&'a self, spec: &'a RolloutSpec) -> &'a LabelSelector {
        match &self.workload {
            Some(w) if spec.workload_ref.is_some() && spec.selector == LabelSelector::default() => {
                &w.selector
            }
            _ => &spec.selector,
        }
    }
}

/// A measurement of one metric of one analysis run.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    pub run: String,
    pub pod_template_hash: String,
    pub metric: String,
    pub measurement: Measurement,
}

/// What AWS shows for one Rollout's traffic split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub load_balancer: Option<AwsResource>,
    pub stable: Option<AwsResource>,
    pub canary: Option<AwsResource>,
    /// The rule (or listener, for a default action) forwarding to both.
    pub rule: Option<String>,
    /// `(canary, stable)` as configured on that rule.
    pub weights: Option<(i32, i32)>,
    /// Each target group's targets as DescribeTargetHealth shows them
    /// (None: not read).
    pub stable_targets: Option<Vec<TargetView>>,
    pub canary_targets: Option<Vec<TargetView>>,
    /// Header routes: the http-header conditions of each rule forwarding
    /// to the canary group alone (`canonical`), shown by every ALB …
    pub header_routes: Vec<Vec<HeaderCondition>>,
    /// … and by any of them (a route still on one ALB may send requests
    /// to the canary).
    pub header_routes_anywhere: Vec<Vec<HeaderCondition>>,
}

/// Header conditions in one order (by lower-cased header name, values
/// sorted), so that the ALB's and the plan's compare equal.
pub fn canonical(conditions: &[HeaderCondition]) -> Vec<HeaderCondition> {
    let mut c = conditions.to_vec();
    for condition in &mut c {
        condition.http_header_config.values.sort();
    }
    c.sort_by_key(|c| c.http_header_config.http_header_name.to_ascii_lowercase());
    c
}

/// A registered target and its health, as ELBv2 shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetView {
    /// A pod IP (`target-type: ip`) or an instance id.
    pub id: String,
    pub state: TargetState,
}

/// ELBv2's `TargetHealth.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Registered, health checks not passed yet: gets no requests.
    Initial,
    Healthy,
    Unhealthy,
    /// Deregistered, finishing its requests for the deregistration delay.
    Draining,
    /// Its target group is not used by a listener rule.
    Unused,
    Unavailable,
}

impl Observed {
    /// Several ALBs (a Rollout with several Ingresses) as one: weights only
    /// where all show the same, and each target in the worst state any
    /// shows (one missing from a target group counts as `initial` there),
    /// so weight moves only onto pods healthy everywhere and pods go only
    /// once drained everywhere; header routes as every ALB shows them, and
    /// as any one does. Names and ARNs are the first ALB's.
    pub fn merge(all: Vec<Observed>) -> Option<Observed> {
        let mut all = all.into_iter();
        let mut merged = all.next()?;
        for o in all {
            if merged.weights != o.weights {
                merged.weights = None;
            }
            merged.header_routes.retain(|r| o.header_routes.contains(r));
            for r in o.header_routes_anywhere {
                if !merged.header_routes_anywhere.contains(&r) {
                    merged.header_routes_anywhere.push(r);
                }
            }
            merged.stable_targets = worst(merged.stable_targets.take(), o.stable_targets);
            merged.canary_targets = worst(merged.canary_targets.take(), o.canary_targets);
        }
        Some(merged)
    }
}

/// Each target of `a` or `b` in the worse of its two states.
fn worst(a: Option<Vec<TargetView>>, b: Option<Vec<TargetView>>) -> Option<Vec<TargetView>> {
    let (a, b) = (a?, b?);
    let rank = |s: TargetState| match s {
        TargetState::Healthy => 0,
        TargetState::Unused => 1,
        TargetState::Unavailable => 2,
        TargetState::Unhealthy => 3,
        TargetState::Initial => 4,
        TargetState::Draining => 5,
    };
    let state_in = |list: &[TargetView], id: &str| {
        list.iter()
            .find(|t| t.id == id)
            .map_or(TargetState::Initial, |t| t.state)
    };
    let mut ids: Vec<&String> = a.iter().chain(&b).map(|t| &t.id).collect();
    ids.sort();
    ids.dedup();
    let merged = ids
        .into_iter()
        .map(|id| {
            let (x, y) = (state_in(&a, id), state_in(&b, id));
            TargetView {
                id: id.clone(),
                state: if rank(x) >= rank(y) { x } else { y },
            }
        })
        .collect();
    Some(merged)
}

impl TargetState {
    /// ELBv2's spelling (`healthy`, `draining`, …); unknown ones are Unavailable.
    pub fn parse(s: &str) -> TargetState {
        match s {
            "initial" => TargetState::Initial,
            "healthy" => TargetState::Healthy,
            "unhealthy" => TargetState::Unhealthy,
            "draining" | "unhealthy.draining" => TargetState::Draining,
            "unused" => TargetState::Unused,
            _ => TargetState::Unavailable,
        }
    }
}

impl Observed {
    /// Stands in for an ALB that is watched but could not be read just now
    /// (or, in `rollout plan`, that no cluster shows): arguments naming its
    /// resources resolve to these placeholders rather than failing.
    pub fn placeholder() -> Observed {
        let arn = |kind: &str, name: &str| AwsResource {
            name: name.into(),
            arn: format!("arn:aws:elasticloadbalancing:<region>:<account>:{kind}/{name}/<id>"),
        };
        Observed {
            load_balancer: Some(arn("loadbalancer", "app/<load-balancer>")),
            stable: Some(arn("targetgroup", "<stable-target-group>")),
            canary: Some(arn("targetgroup", "<canary-target-group>")),
            rule: None,
            weights: None,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, state: TargetState) -> TargetView {
        TargetView {
            id: id.into(),
            state,
        }
    }

    #[test]
    fn several_albs_show_only_what_all_of_them_show() {
        use TargetState::*;
        let alb = |weights, targets: Vec<TargetView>| Observed {
            weights,
            stable_targets: Some(targets.clone()),
            canary_targets: Some(targets),
            ..Default::default()
        };
        let internal = alb(
            Some((20, 80)),
            vec![target("10.0.0.1", Healthy), target("10.0.0.2", Healthy)],
        );
        let public = alb(
            Some((20, 80)),
            vec![
                target("10.0.0.1", Healthy),
                target("10.0.0.2", Initial),
                target("10.0.0.3", Draining),
            ],
        );
        let both = Observed::merge(vec![internal.clone(), public]).unwrap();
        assert_eq!(both.weights, Some((20, 80)));
        assert_eq!(
            both.stable_targets.unwrap(),
            [
                target("10.0.0.1", Healthy),
                target("10.0.0.2", Initial),
                target("10.0.0.3", Draining)
            ]
        );
        // One ALB behind: no weights in force; a target only one has is
        // still registered (not healthy) everywhere else.
        let behind = alb(Some((0, 100)), vec![target("10.0.0.1", Healthy)]);
        let both = Observed::merge(vec![internal, behind]).unwrap();
        assert_eq!(both.weights, None);
        assert_eq!(
            both.canary_targets.unwrap(),
            [target("10.0.0.1", Healthy), target("10.0.0.2", Initial)]
        );
        assert_eq!(Observed::merge(Vec::new()), None);
    }
}
