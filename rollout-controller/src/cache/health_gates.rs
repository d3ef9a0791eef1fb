//! The AWS Load Balancer Controller's pod readiness gates: which pods carry
//! a gate for which Service's target group, and whether it passed. Its
//! webhook gives a new pod one gate per TargetGroupBinding whose Service
//! selects it (`target-health.elbv2.k8s.aws/<binding>`), and the LB
//! controller turns the gate's condition true once the pod is a healthy
//! target in that group.
//!
//! Two watches, kept as indexes: TargetGroupBindings (binding → its
//! Service) and the Rollouts' pods, of which only those carrying a gate
//! are kept, and of those only the gates.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::watcher;
use serde::Deserialize;

use super::cached_resource;
use super::staged::Staged;
use rollout_core::world::HealthGate;

/// The condition type of a gate, before the binding's name.
pub const GATE_PREFIX: &str = "target-health.elbv2.k8s.aws/";

/// A pod: its readiness gates and conditions (nothing else is read).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedPod {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<PodGates>,
    #[serde(default)]
    pub status: Option<PodConditions>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodGates {
    #[serde(default)]
    pub readiness_gates: Option<Vec<ReadinessGate>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessGate {
    pub condition_type: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodConditions {
    #[serde(default)]
    pub conditions: Option<Vec<PodCondition>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub last_transition_time: Option<String>,
}

cached_resource!(CachedPod, Pod);

impl CachedPod {
    /// The LB controller's gates the pod carries: binding name → condition.
    fn gates(&self) -> Vec<(String, HealthGate)> {
        let gates = self.spec.as_ref().and_then(|s| s.readiness_gates.as_ref());
        let conditions = self.status.as_ref().and_then(|s| s.conditions.as_ref());
        gates
            .into_iter()
            .flatten()
            .filter_map(|g| {
                let binding = g.condition_type.strip_prefix(GATE_PREFIX)?;
                let condition = conditions
                    .into_iter()
                    .flatten()
                    .find(|c| c.type_ == g.condition_type);
                let gate = HealthGate {
                    healthy: condition.is_some_and(|c| c.status == "True"),
                    since: condition.and_then(|c| c.last_transition_time.as_deref()?.parse().ok()),
                };
                Some((binding.to_string(), gate))
            })
            .collect()
    }
}

/// A TargetGroupBinding (`elbv2.k8s.aws/v1beta1`): the Service it binds.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedTargetGroupBinding {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<BindingSpec>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingSpec {
    pub service_ref: Option<ServiceRef>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServiceRef {
    pub name: String,
}

impl kube::Resource for CachedTargetGroupBinding {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "TargetGroupBinding".into()
    }

    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        BINDING_GROUP.into()
    }

    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        BINDING_VERSION.into()
    }

    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        BINDING_PLURAL.into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

pub const BINDING_GROUP: &str = "elbv2.k8s.aws";
pub const BINDING_VERSION: &str = "v1beta1";
pub const BINDING_PLURAL: &str = "targetgroupbindings";

impl CachedTargetGroupBinding {
    pub fn service(&self) -> Option<&str> {
        Some(self.spec.as_ref()?.service_ref.as_ref()?.name.as_str())
    }
}

/// (namespace, pod) → its gates.
type PodIndex = HashMap<(String, String), Vec<(String, HealthGate)>>;
/// (namespace, binding) → its Service.
type BindingIndex = HashMap<(String, String), String>;

/// The readiness gates of the Rollouts' pods, and what they are for.
#[derive(Clone, Default)]
pub struct HealthGates {
    pods: Staged<PodIndex>,
    bindings: Staged<BindingIndex>,
}

fn key(o: &impl ResourceExt) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

impl HealthGates {
    /// The gate `pod` in `ns` carries for `service`'s target group, if any.
    pub fn of(&self, ns: &str, service: &str, pod: &str) -> Option<HealthGate> {
        let pods = self.pods.read();
        let gates = pods.get(&(ns.to_string(), pod.to_string()))?;
        let bindings = self.bindings.read();
        gates.iter().find_map(|(binding, gate)| {
            let bound = bindings.get(&(ns.to_string(), binding.clone()))?;
            (bound == service).then_some(*gate)
        })
    }

    /// The Services whose target groups `pod` carries a gate for.
    pub fn services_of(&self, pod: &CachedPod) -> Vec<String> {
        let ns = pod.namespace().unwrap_or_default();
        let bindings = self.bindings.read();
        pod.gates()
            .into_iter()
            .filter_map(|(binding, _)| bindings.get(&(ns.clone(), binding)).cloned())
            .collect()
    }

    pub fn observe_pod(&self, event: &watcher::Event<CachedPod>) {
        let set = |index: &mut PodIndex, pod: &CachedPod| {
            let gates = pod.gates();
            if gates.is_empty() {
                index.remove(&key(pod));
            } else {
                index.insert(key(pod), gates);
            }
        };
        self.pods
            .observe(event, set, |index, pod| drop(index.remove(&key(pod))));
    }

    pub fn observe_binding(&self, event: &watcher::Event<CachedTargetGroupBinding>) {
        let set = |index: &mut BindingIndex, b: &CachedTargetGroupBinding| {
            if let Some(service) = b.service() {
                index.insert(key(b), service.to_string());
            }
        };
        self.bindings
            .observe(event, set, |index, b| drop(index.remove(&key(b))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, gates: &[&str], conditions: serde_json::Value) -> CachedPod {
        let gates: Vec<_> = gates.iter().map(|g| json!({"conditionType": g})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"containers": [{"name": "app", "image": "x"}], "readinessGates": gates},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn binding(name: &str, service: &str) -> CachedTargetGroupBinding {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"serviceRef": {"name": service, "port": 80}, "targetGroupARN": "arn", "targetType": "ip"}
        }))
        .unwrap()
    }

    #[test]
    fn a_pods_gate_is_found_through_its_binding() {
        let g = HealthGates::default();
        let canary_gate = format!("{GATE_PREFIX}k8s-shop-backends-1a2b3c4d5e");
        let stable_gate = format!("{GATE_PREFIX}k8s-shop-backends-9f8e7d6c5b");
        g.observe_binding(&watcher::Event::Apply(binding(
            "k8s-shop-backends-1a2b3c4d5e",
            "backend-canary",
        )));
        g.observe_binding(&watcher::Event::Apply(binding(
            "k8s-shop-backends-9f8e7d6c5b",
            "backend-stable",
        )));
        let p = pod(
            "backend-7c9f-x1",
            &[&canary_gate, &stable_gate, "other.example/ready"],
            json!([
                {"type": "Ready", "status": "False"},
                {"type": canary_gate, "status": "True", "lastTransitionTime": "2026-12-07T10:00:05Z"},
                {"type": stable_gate, "status": "False", "reason": "Elb.RegistrationInProgress"}
            ]),
        );
        g.observe_pod(&watcher::Event::Apply(p.clone()));
        let canary = g.of("shop", "backend-canary", "backend-7c9f-x1").unwrap();
        assert!(canary.healthy);
        assert_eq!(canary.since, Some("2026-12-07T10:00:05Z".parse().unwrap()));
        let stable = g.of("shop", "backend-stable", "backend-7c9f-x1").unwrap();
        assert_eq!((stable.healthy, stable.since), (false, None));
        assert_eq!(g.of("shop", "other", "backend-7c9f-x1"), None);
        assert_eq!(g.of("prod", "backend-canary", "backend-7c9f-x1"), None);
        let mut services = g.services_of(&p);
        services.sort();
        assert_eq!(services, ["backend-canary", "backend-stable"]);

        // A pod without gates is not kept; a deleted one goes.
        g.observe_pod(&watcher::Event::Apply(pod("plain", &[], json!([]))));
        assert!(
            g.pods
                .read()
                .get(&("shop".into(), "plain".into()))
                .is_none()
        );
        g.observe_pod(&watcher::Event::Delete(p));
        assert_eq!(g.of("shop", "backend-canary", "backend-7c9f-x1"), None);
    }
}
