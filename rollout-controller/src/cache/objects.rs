//! ReplicaSets, Services and Ingresses as the decision sees them. The
//! watches deserialize straight into these types, so what they leave out
//! (pod templates, ports, most of an Ingress spec) is skipped while parsing
//! and never allocated; the `trim_*` functions then drop the labels and
//! annotations no decision reads.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerStatus, IngressRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

use super::{cached_resource, keep_annotations, lean_meta};
use crate::reconcile::{SCALE_DOWN_AT, SELECTED_AT};
use crate::replica_sets::{POD_METADATA, STOPS_GRACEFULLY};
use rollout_core::alb::MANAGED_ACTIONS;
use rollout_core::types::POD_TEMPLATE_HASH;
use rollout_core::validate::GATE_ANNOTATIONS;

/// A ReplicaSet: its metadata (name, owner, hash label, scale-down
/// deadline), the replicas asked for, the pods ready and available.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedReplicaSet {
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: CachedReplicaSetSpec,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: CachedReplicaSetStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedReplicaSetSpec {
    pub replicas: Option<i32>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedReplicaSetStatus {
    pub ready_replicas: Option<i32>,
    pub available_replicas: Option<i32>,
}

cached_resource!(CachedReplicaSet, ReplicaSet);

/// Only the metadata a decision reads: the hash label, the scale-down
/// deadline and the role metadata its pods carry.
pub fn trim_replica_set(rs: &mut CachedReplicaSet) {
    lean_meta(&mut rs.metadata);
    keep_annotations(&mut rs.metadata, |k| {
        k == SCALE_DOWN_AT || k == POD_METADATA || k == STOPS_GRACEFULLY
    });
    if let Some(labels) = &mut rs.metadata.labels {
        labels.retain(|k, _| k == POD_TEMPLATE_HASH);
    }
}

/// A Service: its name and selector.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedService {
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: CachedServiceSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedServiceSpec {
    pub selector: Option<BTreeMap<String, String>>,
}

cached_resource!(CachedService, Service);

impl CachedService {
    /// The pod-template hash the Service selects, if it pins one.
    pub fn selected_hash(&self) -> Option<&String> {
        self.spec.selector.as_ref()?.get(POD_TEMPLATE_HASH)
    }

    pub fn annotation(&self, key: &str) -> Option<&String> {
        self.metadata.annotations.as_ref()?.get(key)
    }
}

pub fn trim_service(service: &mut CachedService) {
    lean_meta(&mut service.metadata);
    service.metadata.labels = None;
    keep_annotations(&mut service.metadata, |k| k == SELECTED_AT);
}

/// An Ingress: the ALB action annotations and the marker of which are
/// managed, its rules, its load balancer's hostname.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedIngress {
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: CachedIngressSpec,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: CachedIngressStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedIngressSpec {
    pub rules: Option<Vec<IngressRule>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedIngressStatus {
    pub load_balancer: Option<IngressLoadBalancerStatus>,
}

cached_resource!(CachedIngress, Ingress);

impl CachedIngress {
    /// The load balancer's DNS name, once the AWS controller wrote it.
    pub fn hostname(&self) -> Option<&String> {
        let status = self.status.load_balancer.as_ref()?;
        status.ingress.as_ref()?.first()?.hostname.as_ref()
    }
}

pub fn trim_ingress(ingress: &mut CachedIngress) {
    lean_meta(&mut ingress.metadata);
    ingress.metadata.labels = None;
    // The weights and header routes, and the LB controller's timing the
    // traffic gates read.
    keep_annotations(&mut ingress.metadata, |k| {
        k == MANAGED_ACTIONS
            || k.contains("/actions.")
            || k.contains("/conditions.")
            || k.rsplit_once('/')
                .is_some_and(|(_, name)| GATE_ANNOTATIONS.contains(&name))
    });
    // Only the first load balancer's hostname is read.
    if let Some(lb) = &mut ingress.status.load_balancer {
        let first = lb.ingress.take().and_then(|all| all.into_iter().next());
        lb.ingress = first.map(|mut first| {
            first.ports = None;
            first.ip = None;
            vec![first]
        });
    }
}

/// An absent or `null` spec or status reads as empty, as it does in the
/// full types (where both are `Option`s).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> serde_json::Value {
        json!({"name": "web", "namespace": "shop", "labels": {"app": "web"},
               "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                               "alb.ingress.kubernetes.io/actions.web": "{\"type\":\"forward\"}",
                               "alb.ingress.kubernetes.io/scheme": "internet-facing"},
               "managedFields": [{"manager": "kubectl"}]})
    }

    #[test]
    fn a_service_keeps_its_selector_and_when_it_was_pointed_only() {
        let mut service: CachedService = serde_json::from_value(json!({
            "metadata": meta(),
            "spec": {"selector": {"app": "web", POD_TEMPLATE_HASH: "abc"},
                     "ports": [{"port": 80}], "clusterIP": "10.0.0.1"},
            "status": null
        }))
        .unwrap();
        trim_service(&mut service);
        assert_eq!(service.selected_hash().map(String::as_str), Some("abc"));
        assert!(service.metadata.annotations.is_none() && service.metadata.labels.is_none());
        let mut pointed = meta();
        pointed["annotations"][SELECTED_AT] = json!("2026-12-07T10:00:00Z");
        let mut service: CachedService =
            serde_json::from_value(json!({"metadata": pointed, "spec": null})).unwrap();
        trim_service(&mut service);
        assert_eq!(service.metadata.annotations.as_ref().unwrap().len(), 1);
        assert_eq!(
            service.annotation(SELECTED_AT).map(String::as_str),
            Some("2026-12-07T10:00:00Z")
        );
        assert!(service.metadata.managed_fields.is_none());
        let bare: CachedService =
            serde_json::from_value(json!({"metadata": meta(), "spec": null})).unwrap();
        assert_eq!(bare.selected_hash(), None);
    }

    #[test]
    fn an_ingress_keeps_its_actions_rules_and_first_hostname() {
        let mut ingress: CachedIngress = serde_json::from_value(json!({
            "metadata": meta(),
            "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"name": "use-annotation"}}}}]}}]},
            "status": {"loadBalancer": {"ingress": [
                {"hostname": "a.elb.amazonaws.com", "ports": [{"port": 443, "protocol": "TCP"}]},
                {"hostname": "b.elb.amazonaws.com"}]}}
        }))
        .unwrap();
        trim_ingress(&mut ingress);
        let kept: Vec<_> = ingress
            .metadata
            .annotations
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(kept, ["alb.ingress.kubernetes.io/actions.web"]);
        assert_eq!(ingress.spec.rules.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            ingress.hostname().map(String::as_str),
            Some("a.elb.amazonaws.com")
        );
        let lb = ingress.status.load_balancer.as_ref().unwrap();
        assert_eq!(lb.ingress.as_ref().unwrap().len(), 1);
        assert!(lb.ingress.as_ref().unwrap()[0].ports.is_none());
        let pending: CachedIngress = serde_json::from_value(json!({"metadata": meta()})).unwrap();
        assert_eq!(pending.hostname(), None);
    }
}
