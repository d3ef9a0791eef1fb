//! Events about Rollouts (`events.k8s.io/v1`), created directly. kube's
//! Recorder keeps every event it sent for six minutes to fold repeats into
//! a series; the controller's events mark changes of state and do not
//! repeat, and at 10,000 Rollouts that cache held tens of thousands of
//! events for nothing.

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

use rollout_core::types::Rollout;

/// The controller's name on its events (and its field manager).
pub const REPORTER: &str = "gantry-rollout-controller";

/// Records `reason` with `note` on `rollout`; aborts and degradations are
/// warnings.
pub async fn publish(
    client: &Client,
    rollout: &Rollout,
    reason: &str,
    note: &str,
) -> Result<(), kube::Error> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let namespace = rollout.namespace().unwrap_or_default();
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", rollout.name_any(), now.as_nanosecond())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        action: Some("Reconcile".into()),
        reason: Some(reason.into()),
        note: Some(note.into()),
        type_: Some(event_type(reason).into()),
        event_time: Some(MicroTime(now)),
        regarding: Some(rollout.object_ref(&())),
        reporting_controller: Some(REPORTER.into()),
        reporting_instance: Some(REPORTER.into()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    api.create(&PostParams::default(), &event).await.map(drop)
}

fn event_type(reason: &str) -> &'static str {
    match reason {
        "RolloutAborted" | "RolloutDegraded" => "Warning",
        _ => "Normal",
    }
}
