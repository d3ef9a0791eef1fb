//! What the controller keeps in memory: one reflector store per kind the
//! decision reads, each object cut down to the fields the decision uses
//! before it enters the store. Reconcile reads these stores and never GETs
//! what a watch already holds.
//!
//! - Rollouts (`rollout.rs`): the identity, and the rest as compact JSON,
//!   read back into a `Rollout` when one is reconciled.
//! - Deployments (`deployment.rs`), for `workloadRef`: identity and
//!   replicas, selector and template as compact JSON.
//! - ReplicaSets, Services, Ingresses (`objects.rs`): lean types that the
//!   watch deserializes straight into, so pod templates, Service ports and
//!   Ingress specs are never allocated; then trimmed to the labels and
//!   annotations the decision reads.
//! - EndpointSlices (`endpoints.rs`): the pods behind each Service, kept in
//!   an index by Service rather than a store.
//! - Pods and TargetGroupBindings (`health_gates.rs`), where the AWS Load
//!   Balancer Controller's CRD is served: only the readiness gates it put
//!   on pods, in an index.
//!
//! Services and Ingresses: every one in scope is watched and kept as a lean
//! copy. Labelling the referenced objects instead would add writes to
//! objects the user owns, RBAC to label them, and a gap whenever a Rollout
//! names a Service created after it; the lean copies cost less than that.

mod deployment;
mod endpoints;
mod health_gates;
mod objects;
mod rollout;
mod staged;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};

pub use deployment::CachedDeployment;
pub use endpoints::{CachedEndpointSlice, Endpoints, SERVICE_NAME, trim_endpoint_slice};
pub use health_gates::{
    BINDING_GROUP, BINDING_PLURAL, BINDING_VERSION, CachedPod, CachedTargetGroupBinding,
    HealthGates,
};
pub use objects::{
    CachedIngress, CachedReplicaSet, CachedService, trim_ingress, trim_replica_set, trim_service,
};
pub use rollout::CachedRollout;
use rollout_core::types::AnalysisTemplate;

/// kubectl's copy of the whole object, as large as the object itself.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The stores reconcile reads, and the Rollouts' (the controller's own).
#[derive(Clone)]
pub struct Caches {
    pub rollouts: Store<CachedRollout>,
    pub replica_sets: Store<CachedReplicaSet>,
    pub services: Store<CachedService>,
    pub ingresses: Store<CachedIngress>,
    pub templates: Store<AnalysisTemplate>,
    pub deployments: Store<CachedDeployment>,
    /// The pods behind each Service (EndpointSlices, indexed by Service).
    pub endpoints: Endpoints,
    /// The LB controller's readiness gates on the Rollouts' pods.
    pub health_gates: HealthGates,
}

/// What fills the stores: each moved into its watch's reflector.
pub struct Writers {
    pub rollouts: Writer<CachedRollout>,
    pub replica_sets: Writer<CachedReplicaSet>,
    pub services: Writer<CachedService>,
    pub ingresses: Writer<CachedIngress>,
    pub templates: Writer<AnalysisTemplate>,
    pub deployments: Writer<CachedDeployment>,
}

/// Empty stores and their writers.
pub fn stores() -> (Caches, Writers) {
    let (rollouts, rollouts_w) = reflector::store();
    let (replica_sets, replica_sets_w) = reflector::store();
    let (services, services_w) = reflector::store();
    let (ingresses, ingresses_w) = reflector::store();
    let (templates, templates_w) = reflector::store();
    let (deployments, deployments_w) = reflector::store();
    let caches = Caches {
        rollouts,
        replica_sets,
        services,
        ingresses,
        templates,
        deployments,
        endpoints: Endpoints::default(),
        health_gates: HealthGates::default(),
    };
    let writers = Writers {
        rollouts: rollouts_w,
        replica_sets: replica_sets_w,
        services: services_w,
        ingresses: ingresses_w,
        templates: templates_w,
        deployments: deployments_w,
    };
    (caches, writers)
}

impl Caches {
    /// The ReplicaSets in `ns` owned by the object with `uid`.
    pub fn owned_replica_sets(&self, ns: &str, uid: &str) -> Vec<Arc<CachedReplicaSet>> {
        self.replica_sets
            .state()
            .into_iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns))
            .filter(|rs| rs.owner_references().iter().any(|o| o.uid == uid))
            .collect()
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<Arc<CachedService>> {
        self.services.get(&ObjectRef::new(name).within(ns))
    }

    pub fn ingress(&self, ns: &str, name: &str) -> Option<Arc<CachedIngress>> {
        self.ingresses.get(&ObjectRef::new(name).within(ns))
    }

    pub fn template(&self, ns: &str, name: &str) -> Option<Arc<AnalysisTemplate>> {
        self.templates.get(&ObjectRef::new(name).within(ns))
    }

    pub fn deployment(&self, ns: &str, name: &str) -> Option<Arc<CachedDeployment>> {
        self.deployments.get(&ObjectRef::new(name).within(ns))
    }
}

pub fn trim_template(template: &mut AnalysisTemplate) {
    lean_meta(&mut template.metadata);
}

/// Metadata without what no decision reads: managedFields and kubectl's
/// last-applied copy.
fn lean_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

fn keep_annotations(meta: &mut ObjectMeta, keep: impl Fn(&str) -> bool) {
    if let Some(annotations) = &mut meta.annotations {
        annotations.retain(|k, _| keep(k));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// `kube::Resource` for a cached type: the API coordinates of the full
/// kind it is read from, the metadata it keeps.
macro_rules! cached_resource {
    ($cached:ty, $full:ty) => {
        impl kube::Resource for $cached {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                <$full as kube::Resource>::kind(&())
            }

            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                <$full as kube::Resource>::group(&())
            }

            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                <$full as kube::Resource>::version(&())
            }

            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                <$full as kube::Resource>::plural(&())
            }

            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
use cached_resource;
