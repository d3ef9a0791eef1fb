//! The `Rollout` custom resource, shaped like Argo Rollouts' canary subset
//! so that an Argo user migrates by changing `apiVersion`.
//!
//! Fields we do not support (blueGreen, experiments, header routes, …) are
//! kept in the schema as opaque values rather than pruned by the API
//! server, so that validation can reject them by name instead of silently
//! ignoring them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The label carrying a pod template's hash on ReplicaSets, pods and Service
/// selectors (Argo's name, so existing dashboards and queries keep working).
pub const POD_TEMPLATE_HASH: &str = "rollouts-pod-template-hash";

// clippy reads the repeated `printcolumn(type_ = …)` keys as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    shortname = "ro",
    category = "gantry",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Current", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Up-to-date",
        type_ = "integer",
        json_path = ".status.updatedReplicas"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas"
    ),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.stepDisplay"),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".status.canary.weights.canary.weight"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Desired pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Required unless `workloadRef` names a Deployment (whose selector is used).
    #[serde(default)]
    pub selector: LabelSelector,
    /// Required unless `workloadRef` names a Deployment (whose template is used).
    #[serde(default)]
    pub template: PodTemplateSpec,
    /// Old ReplicaSets kept for rollback (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    /// Stops step progress while true (traffic stays where it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    pub strategy: Strategy,
    /// Take the pod template (and selector) from this Deployment instead of
    /// `template` (Argo's migration path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
    /// Seconds a new pod must be ready before it counts as available (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// Seconds without progress after which an update is Degraded (default 600;
    /// not counted while paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Abort the canary when the progress deadline is exceeded (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_abort: Option<bool>,
    /// Going back to one of the last `revisions` revisions (its ReplicaSet
    /// still kept) skips the steps, as a rollback to the stable one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<RollbackWindow>,
    /// Pods created before this time (RFC 3339) are restarted, one at a
    /// time, each only while every other pod is available (`gantry rollout
    /// restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<String>,
}

/// `spec.rollbackWindow`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct RollbackWindow {
    /// Revisions counted back from the stable one, itself included.
    #[serde(default)]
    pub revisions: i32,
}

/// `spec.workloadRef`: the Deployment whose pod template the Rollout runs.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `apps/v1`
    pub api_version: String,
    /// `Deployment`
    pub kind: String,
    pub name: String,
    /// What happens to the Deployment's own pods (default `never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<WorkloadScaleDown>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadScaleDown {
    /// Leave the Deployment as it is.
    Never,
    /// Scale it to zero once the Rollout is Healthy.
    OnSuccess,
    /// Scale it down as the Rollout's pods become available (and back up if
    /// the first rollout fails).
    Progressively,
}

/// Labels and annotations put on one role's pods (`canaryMetadata`,
/// `stableMetadata`) and moved when the role changes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct PodMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl PodMetadata {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Not supported: rejected with a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub blue_green: Option<Value>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// The Service gantry points at the canary's pods. Required with
    /// `trafficRouting`; optional for a basic canary (validated, so that a
    /// missing one is reported with the rest).
    #[serde(default)]
    pub canary_service: String,
    /// The Service gantry points at the stable pods (as `canaryService`).
    #[serde(default)]
    pub stable_service: String,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// Seconds the old stable ReplicaSet keeps running after traffic left it (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
    /// How many old ReplicaSets may wait out `scaleDownDelaySeconds` at
    /// once (default: all); older ones go as soon as their pods left the
    /// load balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Seconds the canary keeps running after an abort (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Background analysis (run by the analysis feature; validated here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// Pods above `replicas` while a canary without traffic routing moves
    /// (a number or a percentage, rounded up; default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    /// Pods below `replicas` allowed unavailable meanwhile (rounded down;
    /// default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Two Services that take the stable and canary roles in turn (ALB
    /// routing; instead of canaryService and stableService).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_pong: Option<PingPong>,
    /// Put on the canary's pods while it is the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_metadata: Option<PodMetadata>,
    /// Put on the stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_metadata: Option<PodMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub anti_affinity: Option<Value>,
    /// With traffic routing: the stable shrinks to its share of the
    /// traffic as the canary's grows (once the ALB applies it), and grows
    /// back before weight returns to it. Its pods then stop gracefully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_stable_scale: Option<bool>,
}

/// `alb.stickinessConfig`, as in the ALB's `TargetGroupStickinessConfig`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StickinessConfig {
    #[serde(default)]
    pub enabled: bool,
    /// 1 to 604800 (7 days).
    #[serde(default)]
    pub duration_seconds: i64,
}

/// `pingPong`: at each promotion the Service that carried the canary
/// becomes the stable one (`status.canary.stablePingPong`), so its target
/// group, already holding the new pods, serves on without a selector change.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PingPong {
    #[serde(default)]
    pub ping_service: String,
    #[serde(default)]
    pub pong_service: String,
}

/// One canary step. Exactly one field must be set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub experiment: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<SetHeaderRoute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub set_mirror_route: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub plugin: Option<Value>,
}

/// `setHeaderRoute`: requests whose headers match go to the canary (ALB:
/// a listener rule of its own, before the weighted one); without `match`,
/// the route is removed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetHeaderRoute {
    /// One of `trafficRouting.managedRoutes`.
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<Vec<HeaderRoutingMatch>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoutingMatch {
    #[serde(default)]
    pub header_name: String,
    #[serde(default)]
    pub header_value: StringMatch,
}

/// Exactly one of `exact`, `prefix` or `regex`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A route the controller manages (`trafficRouting.managedRoutes`): its
/// order is the routes' precedence.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRoute {
    #[serde(default)]
    pub name: String,
}

/// `setCanaryScale`: the canary's pods apart from its traffic weight (with
/// traffic routing). Exactly one field must be set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    /// This many pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// This share of `replicas` (rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Back to following the traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_traffic_weight: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    /// `30s`, `5m`, `1h`, or seconds; absent = wait for promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<IntOrString>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    #[serde(default)]
    pub templates: Vec<AnalysisTemplateRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisArg>,
    /// Background analysis only: the step index it starts at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_step: Option<i32>,
    /// Metrics measured and recorded but never failing the analysis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
}

/// A metric (by name; a regular expression such as `.*` matches several)
/// run in dry-run mode.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub metric_name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    pub template_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
}

/// An argument: a literal `value`, or a `valueFrom` source. Rollouts may use
/// `podTemplateHashValue` and `fieldRef`; templates may use `secretKeyRef`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisArg {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom {
    /// `Stable` or `Latest`: the pod template hash of that ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash_value: Option<String>,
    /// A field of the Rollout: `metadata.name`, `metadata.namespace`,
    /// `metadata.labels['k']` or `metadata.annotations['k']`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
    /// A key of a Secret in the Rollout's namespace (template args only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// `CanaryTargetGroup`, `StableTargetGroup` or `LoadBalancer`: the
    /// CloudWatch dimension value (`targetgroup/…`, `app/…`) of the ALB
    /// resources the controller found through ELBv2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_dimension: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

#[derive(
    Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb: Option<AlbTrafficRouting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub nginx: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub istio: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub smi: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub traefik: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub plugins: Option<Value>,
    /// The header routes `setHeaderRoute` steps set, in precedence order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_routes: Option<Vec<ManagedRoute>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlbTrafficRouting {
    /// The Ingress whose `actions.<rootService>` annotation holds the weights
    /// (ingress mode; leave empty with `direct`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ingress: String,
    #[serde(default)]
    pub service_port: i32,
    /// Direct mode: the controller sets the weights on a listener or rule
    /// the AWS Load Balancer Controller does not own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<AlbDirect>,
    /// The service named in the Ingress rule (default: stableService).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_service: Option<String>,
    /// Default `alb.ingress.kubernetes.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_prefix: Option<String>,
    /// Several Ingresses (say an internal and a public ALB) instead of
    /// `ingress`: each carries the weights, and a step counts once all do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingresses: Option<Vec<String>>,
    /// Target group stickiness in the forward action (sticky clients keep
    /// going to the group they were sent to, whatever its weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness_config: Option<StickinessConfig>,
    /// Gantry's traffic-safety gates: weight moves onto a target group only
    /// once its pods are healthy in it, and pods are scaled down only once
    /// they have left every target group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_health: Option<TargetHealth>,
}

/// How long the traffic-safety gates wait, and (without the ELBv2 API, when
/// the controller cannot see target health) how long they assume the ALB
/// takes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetHealth {
    /// A weight gate still waiting after this long aborts the canary, as a
    /// failed analysis does (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// Without the ELBv2 API: how long after a target group's pods are ready
    /// behind its Service before weight moves onto it (default: the
    /// Ingress's health-check interval × healthy threshold, 15 s × 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_seconds: Option<i32>,
    /// Without the ELBv2 API: how long pods that left a target group may
    /// still receive requests, before they are scaled down (default: the
    /// Ingress's `deregistration_delay.timeout_seconds`, else AWS's 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_seconds: Option<i32>,
}

/// A listener's default action or a listener rule forwarding to two target
/// groups (e.g. a Terraform-managed ALB with TargetGroupBindings).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlbDirect {
    /// Set the listener's default action (give this or `ruleArn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_arn: Option<String>,
    /// Set one listener rule's forward action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_arn: Option<String>,
    pub stable_target_group_arn: String,
    pub canary_target_group_arn: String,
}

/// Any JSON value, kept as is by the API server.
fn opaque(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Progressing,
    Paused,
    Healthy,
    Degraded,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Index of the step being executed; equal to the number of steps when done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    /// `3/7`-style progress for `kubectl get ro`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_display: Option<String>,
    /// Pod template hash of the stable ReplicaSet.
    #[serde(default, rename = "stableRS", skip_serializing_if = "Option::is_none")]
    pub stable_rs: Option<String>,
    /// Pod template hash of `spec.template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    #[serde(default)]
    pub canary: CanaryStatus,
    /// Set by the controller on a pause step; removed by `promote`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,
    /// True while the controller itself holds the rollout at a pause step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub controller_pause: bool,
    /// Set by `abort`: all traffic to stable, canary scaled down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<String>,
    /// The `spec.restartAt` whose restart is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// Set by `promote --full`: skip the remaining steps.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promote_full: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// The label selector as a string, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The analysis runs of the current canary: the step analysis being
    /// run (or last run) and the background analysis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_runs: Vec<AnalysisRunStatus>,
    /// The AWS resources the weights were verified on (or set on, in direct mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb: Option<AlbStatus>,
    /// The traffic-safety gates being waited at: weight held until a target
    /// group's pods are healthy in it, scale-downs held until pods drained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic_gates: Vec<TrafficGate>,
    /// The notifications already sent for the current revision
    /// (`<trigger>/<pod template hash>/…`), so each goes out once, across
    /// reconciles and controller restarts. Absent while nothing subscribes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<Vec<String>>,
}

impl Rollout {
    /// Its containers' images, as its template names them.
    pub fn images(&self) -> Vec<&str> {
        self.spec
            .template
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .filter_map(|c| c.image.as_deref())
            .collect()
    }
}

impl RolloutStatus {
    /// Starts the progress of revision `hash` at step `step_index`: every
    /// field that records how far one revision got is reset here and
    /// nowhere else (Argo does the same when the pod template hash changes).
    /// The destructuring names every field, so a new one must be sorted
    /// into "progress" or "kept" before this compiles.
    pub fn start_revision(&mut self, hash: &str, step_index: i32) {
        let RolloutStatus {
            // One revision's progress.
            current_pod_hash,
            current_step_index,
            pause_conditions,
            controller_pause,
            abort,
            aborted_at,
            promote_full,
            analysis_runs,
            message,
            // Spans revisions, or is observed afresh on every reconcile.
            phase: _,
            observed_generation: _,
            step_display: _,
            stable_rs: _,
            canary: _,
            restarted_at: _,
            replicas: _,
            updated_replicas: _,
            ready_replicas: _,
            available_replicas: _,
            selector: _,
            conditions: _,
            alb: _,
            traffic_gates: _,
            // Pruned by `notify` when the revision changes.
            notified: _,
        } = self;
        *current_pod_hash = Some(hash.to_string());
        *current_step_index = Some(step_index);
        pause_conditions.clear();
        *controller_pause = false;
        *abort = false;
        *aborted_at = None;
        *promote_full = false;
        analysis_runs.clear();
        *message = None;
    }

    /// Whether some per-revision hold or override is set (none may be on a
    /// settled, stable revision).
    pub fn holds_progress(&self) -> bool {
        self.controller_pause
            || !self.pause_conditions.is_empty()
            || self.abort
            || self.aborted_at.is_some()
            || self.promote_full
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlbStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<AwsResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_target_group: Option<AwsResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_target_group: Option<AwsResource>,
    /// The listener rule (or listener, for a default action) carrying the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why the weights could not be read, when they could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A traffic-safety gate being waited at.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficGate {
    pub kind: GateKind,
    /// The Service whose target group must serve (`TargetsHealthy`) or lose
    /// its weight (`WeightsApplied`), or the ReplicaSet whose pods must
    /// leave every target group (`TargetsDrained`).
    pub target: String,
    /// The pods concerned: those the Service selects, or the ReplicaSet's.
    pub pod_template_hash: String,
    /// When the wait started (RFC 3339): the timeout counts from here.
    pub since: String,
    /// Without the ELBv2 API: since when the pods have been ready behind the
    /// Service (the settle delay counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<String>,
    /// What is awaited, e.g. "3 of 4 new pods healthy in backend-stable's
    /// target group".
    pub message: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum GateKind {
    /// Weight waits until the target group's pods are healthy in it.
    #[default]
    TargetsHealthy,
    /// A scale-down waits until the pods have left every target group.
    TargetsDrained,
    /// Without the ELBv2 API: a Service's selector change waits until the
    /// ALB has had time to apply the weight taken off its target group.
    WeightsApplied,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsResource {
    pub name: String,
    pub arn: String,
}

/// Argo's analysis phases.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AnalysisPhase {
    #[default]
    Pending,
    Running,
    Successful,
    Failed,
    Error,
    Inconclusive,
}

impl AnalysisPhase {
    /// Whether the phase is final.
    pub fn completed(self) -> bool {
        !matches!(self, AnalysisPhase::Pending | AnalysisPhase::Running)
    }
}

/// One analysis run, kept in the Rollout status instead of a separate object.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// `step-<index>` for a step analysis, `background` for the background one.
    pub name: String,
    /// The canary ReplicaSet this run judges.
    pub pod_template_hash: String,
    pub phase: AnalysisPhase,
    /// RFC 3339.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub metrics: Vec<MetricResult>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    pub phase: AnalysisPhase,
    /// Measured and recorded only: its phase does not decide the run's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The query with its arguments substituted (secret values masked).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    #[serde(default)]
    pub count: i32,
    #[serde(default)]
    pub successful: i32,
    #[serde(default)]
    pub failed: i32,
    #[serde(default)]
    pub inconclusive: i32,
    #[serde(default)]
    pub error: i32,
    #[serde(default)]
    pub consecutive_error: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The latest measurements, oldest first (at most ten kept).
    #[serde(default)]
    pub measurements: Vec<Measurement>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub phase: AnalysisPhase,
    /// The result as Argo prints it: `0.012` for a scalar, `[0.012,0.3]` for a vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    pub finished_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,
    /// With `pingPong`: which Service is the stable one, `ping` or `pong`
    /// (absent: `pong`, as Argo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_ping_pong: Option<String>,
    /// The header routes (`managedRoutes`) every Ingress carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_routes: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeights {
    pub canary: WeightDestination,
    pub stable: WeightDestination,
    /// Whether the load balancer was seen to apply these weights (None: not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Since when these weights (and header routes) have been in force (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightDestination {
    pub weight: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    pub reason: String,
    /// RFC 3339.
    pub start_time: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True" or "False".
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// `Progressing`: when progress was last made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
}

/// Metrics a canary is judged by, referenced from `steps[].analysis` and
/// `strategy.canary.analysis`; shaped like Argo's AnalysisTemplate.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gantry.dev",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    shortname = "at",
    category = "gantry"
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisArg>,
    pub metrics: Vec<Metric>,
    /// Metrics measured and recorded but never failing the analysis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// Argo field gantry does not support; rejected by name when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub measurement_retention: Option<Value>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    /// Time between measurements (`30s`, `5m`); absent = measure once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Wait before the first measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<String>,
    /// Measurements to take (default 1 without interval; unbounded with one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<IntOrString>,
    /// Inconclusive measurements tolerated (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<IntOrString>,
    /// Consecutive errors tolerated (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<IntOrString>,
    pub provider: MetricProvider,
}

/// Other providers are kept by the API server so that they are rejected by name.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct MetricProvider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// Any HTTP endpoint answering JSON (Argo's `web` provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
    /// CloudWatch's GetMetricData (Argo's `cloudWatch` provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch: Option<CloudWatchMetric>,
    /// A Kubernetes Job per measurement (Argo's `job` provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobMetric>,
    /// Every other Argo provider (datadog, newRelic, …): rejected by name.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: std::collections::BTreeMap<String, Value>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// e.g. `http://prometheus.monitoring:9090` (required; `gantry analysis
    /// run --prometheus` may stand in for it).
    #[serde(default)]
    pub address: String,
    /// PromQL; `{{args.NAME}}` is replaced by the argument's value.
    pub query: String,
    /// Seconds to wait for an answer (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Extra request headers, e.g. `Authorization: Bearer {{args.token}}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub authentication: Option<Value>,
}

/// `provider.web`: the measurement is the JSON the URL answers, or the
/// part of it `jsonPath` selects; `{{args.NAME}}` is replaced in the URL,
/// headers and body.
/// A measurement is a Job in the Rollout's namespace: Successful when it
/// completes, Failed when it fails.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobMetric {
    /// Labels and annotations for the Job.
    #[serde(default, skip_serializing_if = "PodMetadata::is_empty")]
    pub metadata: PodMetadata,
    /// A `batch/v1` JobSpec; `{{args.NAME}}` is replaced in its strings.
    #[serde(default)]
    #[schemars(schema_with = "opaque")]
    pub spec: Value,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebMetric {
    pub url: String,
    /// `GET` (default), `POST` or `PUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// The request body as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The request body as JSON (sent with `Content-Type: application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub json_body: Option<Value>,
    /// Seconds to wait for the answer (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// What of the answer to judge, e.g. `{$.data.errorRate}` (default: all of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque")]
    pub authentication: Option<Value>,
}

/// `provider.cloudWatch`: GetMetricData over the last `interval`;
/// `result` is the list of its MetricDataResults (`result[0].Values`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetric {
    /// How far back to read (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    pub metric_data_queries: Vec<MetricDataQuery>,
}

/// A GetMetricData query as the API takes it (field names in camelCase).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricDataQuery {
    pub id: String,
    /// Metric math over other queries' ids (give this or metricStat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_stat: Option<MetricStat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Seconds per datapoint of an expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<i32>,
    /// Whether the result carries this query (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_data: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricStat {
    pub metric: CloudWatchMetricName,
    /// Seconds per datapoint (60 or a multiple of it; 1, 5, 10, 30 for
    /// high-resolution metrics).
    pub period: i32,
    /// `Sum`, `Average`, `Maximum`, `p99`, …
    pub stat: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchMetricName {
    pub namespace: String,
    pub metric_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<Dimension>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub key: String,
    pub value: String,
}
