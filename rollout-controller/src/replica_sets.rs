//! A Rollout's ReplicaSets and their pods as the glue writes them: a new
//! ReplicaSet from the pod template, and a role's metadata
//! (`canaryMetadata` / `stableMetadata`) moved onto a ReplicaSet's
//! template and its running pods.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{LifecycleHandler, Pod, PodTemplateSpec, SleepAction};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Map, Value, json};

use crate::expectations::conditional;
use rollout_core::hash::selector_string;
use rollout_core::types::{POD_TEMPLATE_HASH, PodMetadata, Rollout};

/// The role metadata a ReplicaSet's pods carry, as JSON, so the next role
/// change knows which keys to take off again.
pub const POD_METADATA: &str = "gantry.dev/pod-metadata";

/// Set on a ReplicaSet whose every container has a preStop hook (gantry's
/// sleep where it had none): its pods keep serving a while once deleted.
pub const STOPS_GRACEFULLY: &str = "gantry.dev/stops-gracefully";

/// What a ReplicaSet records as its role metadata.
pub fn recorded_metadata(annotations: &BTreeMap<String, String>) -> PodMetadata {
    annotations
        .get(POD_METADATA)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// `<rollout>-<hash>`: the template plus the hash label (and the role's
/// metadata) on the ReplicaSet, its selector and its pods; owned by the
/// Rollout for garbage collection.
pub fn new_replica_set(
    rollout: &Rollout,
    template: &PodTemplateSpec,
    selector: &LabelSelector,
    hash: &str,
    replicas: i32,
    role: &PodMetadata,
    pre_stop: Option<Duration>,
) -> ReplicaSet {
    let mut template = template.clone();
    if let Some(sleep) = pre_stop {
        stop_gracefully(&mut template, sleep);
    }
    let meta = template.metadata.get_or_insert_with(Default::default);
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.insert(POD_TEMPLATE_HASH.into(), hash.into());
    let mut pod_labels = labels.clone();
    pod_labels.extend(role.labels.clone());
    meta.labels = Some(pod_labels);
    if !role.annotations.is_empty() {
        meta.annotations
            .get_or_insert_with(Default::default)
            .extend(role.annotations.clone());
    }
    let mut selector = selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let mut recorded = BTreeMap::new();
    if !role.is_empty() {
        recorded.insert(POD_METADATA.to_string(), record(role));
    }
    if pre_stop.is_some() {
        recorded.insert(STOPS_GRACEFULLY.to_string(), "true".to_string());
    }
    let recorded = (!recorded.is_empty()).then_some(recorded);
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", rollout.name_any())),
            namespace: rollout.namespace(),
            labels: Some(labels),
            annotations: recorded,
            owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector,
            template: Some(template),
            min_ready_seconds: rollout.spec.min_ready_seconds,
        }),
        status: None,
    }
}

/// dynamicStableScale deletes pods the ALB may still send requests to: a
/// container without a preStop hook gets one sleeping `sleep` (the pod
/// keeps serving while the LB controller deregisters it), and the pod that
/// much more grace, so its own shutdown keeps the time it had.
fn stop_gracefully(template: &mut PodTemplateSpec, sleep: Duration) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let seconds = sleep.as_secs().max(1) as i64;
    let mut added = false;
    for c in &mut spec.containers {
        let lifecycle = c.lifecycle.get_or_insert_with(Default::default);
        if lifecycle.pre_stop.is_none() {
            lifecycle.pre_stop = Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds }),
                ..Default::default()
            });
            added = true;
        }
    }
    if added {
        let grace = spec
            .termination_grace_period_seconds
            .unwrap_or(DEFAULT_GRACE);
        spec.termination_grace_period_seconds = Some(grace + seconds);
    }
}

/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: i64 = 30;

fn record(role: &PodMetadata) -> String {
    serde_json::to_string(role).expect("string maps serialize")
}

/// A merge patch taking `from`'s keys off and putting `to`'s on.
fn metadata_patch(from: &PodMetadata, to: &PodMetadata) -> Value {
    let map = |from: &BTreeMap<String, String>, to: &BTreeMap<String, String>| {
        let mut m: Map<String, Value> = from.keys().map(|k| (k.clone(), Value::Null)).collect();
        m.extend(
            to.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
        );
        Value::Object(m)
    };
    json!({
        "labels": map(&from.labels, &to.labels),
        "annotations": map(&from.annotations, &to.annotations),
    })
}

/// Moves ReplicaSet `name` (revision `hash`) from role metadata `from` to
/// `to`: its template first (pods it creates from now on), then the pods
/// it runs. A pod gone meanwhile is not an error.
pub async fn move_pod_metadata(
    client: &Client,
    rollout: &Rollout,
    selector: &LabelSelector,
    ns: &str,
    (name, hash): (&str, &str),
    (from, to): (&PodMetadata, &PodMetadata),
    version: Option<&String>,
) -> Result<Option<String>, kube::Error> {
    let params = PatchParams::default();
    let pod_patch = metadata_patch(from, to);
    let recorded = if to.is_empty() {
        Value::Null
    } else {
        Value::String(record(to))
    };
    let rs_patch = json!({
        "metadata": { "annotations": { POD_METADATA: recorded } },
        "spec": { "template": { "metadata": pod_patch.clone() } },
    });
    let rs_patch = conditional(rs_patch, version);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let written = replica_sets
        .patch(name, &params, &Patch::Merge(&rs_patch))
        .await?;
    let mut labels = selector_string(selector).unwrap_or_default();
    if !labels.is_empty() {
        labels.push(',');
    }
    labels.push_str(&format!("{POD_TEMPLATE_HASH}={hash}"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let patch = json!({ "metadata": pod_patch });
    for pod in pods.list(&ListParams::default().labels(&labels)).await? {
        match pods
            .patch(&pod.name_any(), &params, &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            other => {
                other?;
            }
        }
    }
    tracing::info!(rollout = %rollout.name_any(), replica_set = %name, "role metadata moved");
    Ok(written.metadata.resource_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pre_stop_sleep_goes_only_where_there_is_no_hook() {
        let mut template: PodTemplateSpec = serde_json::from_value(json!({"spec": {
            "containers": [
                {"name": "api", "image": "api:1"},
                {"name": "proxy", "image": "proxy:1",
                 "lifecycle": {"preStop": {"exec": {"command": ["drain"]}}}}
            ]
        }}))
        .unwrap();
        stop_gracefully(&mut template, Duration::from_secs(20));
        let spec = serde_json::to_value(template.spec.unwrap()).unwrap();
        assert_eq!(
            spec["containers"][0]["lifecycle"],
            json!({"preStop": {"sleep": {"seconds": 20}}})
        );
        assert_eq!(
            spec["containers"][1]["lifecycle"],
            json!({"preStop": {"exec": {"command": ["drain"]}}}),
            "the user's own hook is kept"
        );
        assert_eq!(
            spec["terminationGracePeriodSeconds"], 50,
            "30 s default + 20 s"
        );
    }
}
