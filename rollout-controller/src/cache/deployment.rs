//! Deployments that `workloadRef` Rollouts take their pod template from:
//! the identity and replicas typed, the selector and template as compact
//! JSON (a typed pod template is mostly empty optional fields), read back
//! when a Rollout referring to the Deployment is reconciled.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

use super::cached_resource;
use rollout_core::world::WorkloadView;

#[derive(Clone, Debug)]
pub struct CachedDeployment {
    metadata: ObjectMeta,
    replicas: i32,
    /// `[selector, template]`
    json: Box<str>,
}

cached_resource!(CachedDeployment, Deployment);

impl CachedDeployment {
    pub fn new(deployment: Deployment) -> Result<CachedDeployment, serde_json::Error> {
        let spec = deployment.spec.unwrap_or_default();
        let json = serde_json::to_string(&(spec.selector, spec.template))?.into_boxed_str();
        let meta = deployment.metadata;
        Ok(CachedDeployment {
            metadata: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                resource_version: meta.resource_version,
                ..Default::default()
            },
            replicas: spec.replicas.unwrap_or(1),
            json,
        })
    }

    /// The Deployment as a Rollout's decision sees it.
    pub fn view(&self) -> Result<WorkloadView, serde_json::Error> {
        let (selector, template) = serde_json::from_str(&self.json)?;
        Ok(WorkloadView {
            name: self.metadata.name.clone().unwrap_or_default(),
            replicas: self.replicas,
            selector,
            template,
        })
    }
}

impl<'de> Deserialize<'de> for CachedDeployment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let deployment = Deployment::deserialize(deserializer)?;
        CachedDeployment::new(deployment).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_a_rollout_reads() {
        let cached: CachedDeployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u", "labels": {"a": "b"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "web:1"}]}}},
            "status": {"replicas": 3}
        }))
        .unwrap();
        let view = cached.view().unwrap();
        assert_eq!(view.name, "web");
        assert_eq!(view.replicas, 3);
        assert_eq!(
            view.selector.match_labels.unwrap()["app"],
            "web".to_string()
        );
        let containers = view.template.spec.unwrap().containers;
        assert_eq!(containers[0].image.as_deref(), Some("web:1"));
        assert!(cached.metadata.labels.is_none() && cached.metadata.managed_fields.is_none());
    }
}
