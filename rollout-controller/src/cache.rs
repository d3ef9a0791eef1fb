//! What the controller keeps in memory: one reflector store per kind the
//! decision reads, each object trimmed to the fields the decision uses
//! before it enters the store. Reconcile reads these stores and never GETs
//! what a watch already holds.
//!
//! Services and Ingresses: every one in scope is watched and kept as a
//! trimmed copy (name, the Service's selector; the Ingress's action
//! annotations, rules and hostname), a few hundred bytes each. Labelling
//! the referenced objects instead would add writes to objects the user
//! owns, RBAC to label them, and a gap whenever a Rollout names a Service
//! created after it; the trimmed copies cost less than that.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::networking::v1::{Ingress, IngressSpec, IngressStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};
use serde::Deserialize;

use crate::reconcile::SCALE_DOWN_AT;
use rollout_core::alb::MANAGED_ACTIONS;
use rollout_core::types::{AnalysisTemplate, POD_TEMPLATE_HASH, Rollout};

/// kubectl's copy of the whole object, as large as the object itself.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The stores reconcile reads, and the Rollouts' (the controller's own).
#[derive(Clone)]
pub struct Caches {
    pub rollouts: Store<Rollout>,
    pub replica_sets: Store<CachedReplicaSet>,
    pub services: Store<Service>,
    pub ingresses: Store<Ingress>,
    pub templates: Store<AnalysisTemplate>,
}

/// What fills the stores: each moved into its watch's reflector.
pub struct Writers {
    pub rollouts: Writer<Rollout>,
    pub replica_sets: Writer<CachedReplicaSet>,
    pub services: Writer<Service>,
    pub ingresses: Writer<Ingress>,
    pub templates: Writer<AnalysisTemplate>,
}

/// Empty stores and their writers.
pub fn stores() -> (Caches, Writers) {
    let (rollouts, rollouts_w) = reflector::store();
    let (replica_sets, replica_sets_w) = reflector::store();
    let (services, services_w) = reflector::store();
    let (ingresses, ingresses_w) = reflector::store();
    let (templates, templates_w) = reflector::store();
    let caches = Caches {
        rollouts,
        replica_sets,
        services,
        ingresses,
        templates,
    };
    let writers = Writers {
        rollouts: rollouts_w,
        replica_sets: replica_sets_w,
        services: services_w,
        ingresses: ingresses_w,
        templates: templates_w,
    };
    (caches, writers)
}

impl Caches {
    /// The ReplicaSets in `ns` owned by the object with `uid`.
    pub fn owned_replica_sets(&self, ns: &str, uid: &str) -> Vec<std::sync::Arc<CachedReplicaSet>> {
        self.replica_sets
            .state()
            .into_iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns))
            .filter(|rs| rs.owner_references().iter().any(|o| o.uid == uid))
            .collect()
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<std::sync::Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(ns))
    }

    pub fn ingress(&self, ns: &str, name: &str) -> Option<std::sync::Arc<Ingress>> {
        self.ingresses.get(&ObjectRef::new(name).within(ns))
    }

    pub fn template(&self, ns: &str, name: &str) -> Option<std::sync::Arc<AnalysisTemplate>> {
        self.templates.get(&ObjectRef::new(name).within(ns))
    }
}

/// Metadata without what no decision reads: managedFields and kubectl's
/// last-applied copy.
fn lean_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

/// A Rollout as the controller keeps it: all of its spec and status.
pub fn trim_rollout(rollout: &mut Rollout) {
    lean_meta(&mut rollout.metadata);
}

pub fn trim_template(template: &mut AnalysisTemplate) {
    lean_meta(&mut template.metadata);
}

/// A ReplicaSet as the decision sees it, read straight from the watch:
/// its metadata (name, owner, hash label, scale-down deadline), the
/// replicas asked for, the pods ready and available. The pod template,
/// most of the object, is never deserialized.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedReplicaSet {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: CachedReplicaSetSpec,
    #[serde(default)]
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

impl kube::Resource for CachedReplicaSet {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "ReplicaSet".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "apps".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "replicasets".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Only the metadata a decision reads: the hash label and the scale-down
/// deadline.
pub fn trim_replica_set(rs: &mut CachedReplicaSet) {
    lean_meta(&mut rs.metadata);
    keep_annotations(&mut rs.metadata, |k| k == SCALE_DOWN_AT);
    if let Some(labels) = &mut rs.metadata.labels {
        labels.retain(|k, _| k == POD_TEMPLATE_HASH);
    }
}

/// A Service as the decision sees it: its name and selector.
pub fn trim_service(service: &mut Service) {
    lean_meta(&mut service.metadata);
    service.metadata.labels = None;
    service.metadata.annotations = None;
    let selector = service.spec.as_mut().and_then(|s| s.selector.take());
    service.spec = Some(ServiceSpec {
        selector,
        ..Default::default()
    });
    service.status = None;
}

/// An Ingress as the decision sees it: the ALB action annotations and the
/// marker of which are managed, its rules, its load balancer's hostname.
pub fn trim_ingress(ingress: &mut Ingress) {
    lean_meta(&mut ingress.metadata);
    ingress.metadata.labels = None;
    keep_annotations(&mut ingress.metadata, |k| {
        k == MANAGED_ACTIONS || k.contains("/actions.")
    });
    let rules = ingress.spec.as_mut().and_then(|s| s.rules.take());
    ingress.spec = Some(IngressSpec {
        rules,
        ..Default::default()
    });
    let hostname = ingress
        .status
        .as_mut()
        .and_then(|s| s.load_balancer.as_mut())
        .and_then(|lb| lb.ingress.as_mut())
        .and_then(|i| i.first_mut())
        .map(|first| {
            first.ports = None;
            first.ip = None;
            first.clone()
        });
    ingress.status = hostname.map(|first| IngressStatus {
        load_balancer: Some(
            k8s_openapi::api::networking::v1::IngressLoadBalancerStatus {
                ingress: Some(vec![first]),
            },
        ),
    });
}

fn keep_annotations(meta: &mut ObjectMeta, keep: impl Fn(&str) -> bool) {
    if let Some(annotations) = &mut meta.annotations {
        annotations.retain(|k, _| keep(k));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}
