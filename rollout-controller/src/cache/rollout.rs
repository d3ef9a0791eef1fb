//! A Rollout as the controller keeps it: its identity as metadata, and
//! the whole object (without managedFields and kubectl's last-applied copy)
//! as compact JSON. Typed, a Rollout is ≈ 11 KB, most of it the pod
//! template's many optional fields; as JSON it is a few hundred bytes plus
//! its status. Reading one back costs tens of microseconds per reconcile,
//! far less than a round trip to the API server.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

use super::{cached_resource, lean_meta};
use rollout_core::types::Rollout;

#[derive(Clone, Debug)]
pub struct CachedRollout {
    /// Name, namespace, uid, resourceVersion, generation: what the stores
    /// and the controller's queue key on. All else is in `json`.
    metadata: ObjectMeta,
    json: Box<str>,
}

cached_resource!(CachedRollout, Rollout);

impl CachedRollout {
    pub fn new(mut rollout: Rollout) -> Result<CachedRollout, serde_json::Error> {
        lean_meta(&mut rollout.metadata);
        let json = serde_json::to_string(&rollout)?.into_boxed_str();
        let meta = rollout.metadata;
        let metadata = ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            resource_version: meta.resource_version,
            generation: meta.generation,
            ..Default::default()
        };
        Ok(CachedRollout { metadata, json })
    }

    /// The Rollout as the API server sent it, but for managedFields and
    /// kubectl's last-applied copy.
    pub fn rollout(&self) -> Result<Rollout, serde_json::Error> {
        serde_json::from_str(&self.json)
    }
}

/// Read as a `Rollout` (so a malformed one fails the watch as it would
/// uncached), then kept compact.
impl<'de> Deserialize<'de> for CachedRollout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rollout = Rollout::deserialize(deserializer)?;
        CachedRollout::new(rollout).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;
    use serde_json::json;

    /// A Rollout with a rich template and status, as the API server sends it.
    fn sent() -> serde_json::Value {
        json!({
            "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                "generation": 3, "finalizers": ["gantry.dev/rollout-cleanup"],
                "labels": {"app": "web"},
                "annotations": {"team": "payments", super::super::LAST_APPLIED: "{\"huge\": true}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                                   "fieldsV1": {"f:spec": {}}}]},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                    "spec": {"containers": [{"name": "api", "image": "web:1",
                        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                        "resources": {"requests": {"cpu": "100m"}},
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}}}]}},
                "strategy": {"canary": {"canaryService": "web-canary", "stableService": "web",
                    "steps": [{"setWeight": 20}, {"pause": {}}]}}},
            "status": {"phase": "Paused", "currentStepIndex": 1, "currentPodHash": "abc", "stableRS": "def",
                "observedGeneration": 3, "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-01-01T00:00:00Z"}],
                "conditions": [{"type": "Progressing", "status": "True", "reason": "Paused", "message": "m",
                                "lastTransitionTime": "2026-01-01T00:00:00Z", "lastUpdateTime": "2026-01-01T00:00:00Z"}]}
        })
    }

    #[test]
    fn reads_back_the_rollout_but_for_managed_fields_and_last_applied() {
        let mut expected: Rollout = serde_json::from_value(sent()).unwrap();
        let cached: CachedRollout = serde_json::from_value(sent()).unwrap();
        expected.metadata.managed_fields = None;
        expected.metadata.annotations = Some([("team".into(), "payments".into())].into());
        let read = serde_json::to_value(cached.rollout().unwrap()).unwrap();
        assert_eq!(read, serde_json::to_value(&expected).unwrap());
        assert_eq!(
            read["status"]["pauseConditions"][0]["reason"],
            "CanaryPauseStep"
        );
        assert_eq!(cached.meta().name.as_deref(), Some("web"));
        assert_eq!(cached.meta().namespace.as_deref(), Some("shop"));
        assert_eq!(cached.meta().uid.as_deref(), Some("u-1"));
        assert_eq!(cached.meta().generation, Some(3));
        assert!(cached.meta().labels.is_none(), "kept in the body only");
        assert!(!cached.json.contains("managedFields") && !cached.json.contains("huge"));
    }

    #[test]
    fn a_malformed_rollout_fails_as_it_would_uncached() {
        let mut bad = sent();
        bad["spec"]["replicas"] = json!("three");
        let error = serde_json::from_value::<CachedRollout>(bad).unwrap_err();
        assert!(error.to_string().contains("invalid type"), "{error}");
    }
}
