//! How a decided status reaches the API server: a JSON merge patch
//! (RFC 7386) of exactly what changed, as Argo Rollouts persists its status.
//!
//! Serializing the new status alone is not enough: fields at their default
//! (`controllerPause: false`, no `message`, no `pauseConditions`) are left
//! out of the JSON, and a merge patch that leaves a field out keeps the old
//! value. Removing a field takes an explicit `null`. Writing only what
//! changed also leaves alone what a human patched meanwhile (a promote
//! clearing `pauseConditions` while the controller decided something else).

use serde_json::{Map, Value};

use crate::types::RolloutStatus;

/// The merge patch (`{"status": …}`) that turns `before` into `after` on the
/// server, or `None` when there is nothing to write.
pub fn status_patch(before: Option<&RolloutStatus>, after: &RolloutStatus) -> Option<Value> {
    let json = |s: &RolloutStatus| serde_json::to_value(s).expect("a status serializes");
    let before = before.map_or(Value::Object(Map::new()), json);
    let diff = merge_diff(&before, &json(after))?;
    Some(serde_json::json!({ "status": diff }))
}

/// The smallest merge patch from `before` to `after`. Objects are patched
/// key by key (a removed key becomes `null`); anything else, arrays
/// included, is replaced whole, as RFC 7386 applies it.
pub fn merge_diff(before: &Value, after: &Value) -> Option<Value> {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut patch = Map::new();
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            for (key, new) in a {
                let changed = match b.get(key) {
                    Some(old) => merge_diff(old, new),
                    None => Some(new.clone()),
                };
                if let Some(change) = changed {
                    patch.insert(key.clone(), change);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        // A null in a merge patch means "remove": an object can only be
        // written whole where the old value was not an object.
        _ if before == after => None,
        _ => Some(after.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PauseCondition, Phase};
    use serde_json::json;

    fn apply(before: &RolloutStatus, patch: &Value) -> RolloutStatus {
        let mut doc = json!({ "status": before });
        json_patch::merge(&mut doc, patch);
        serde_json::from_value(doc["status"].clone()).unwrap()
    }

    #[test]
    fn fields_back_at_their_default_are_removed_with_null() {
        let before = RolloutStatus {
            phase: Some(Phase::Paused),
            message: Some("paused at a canary step".into()),
            controller_pause: true,
            pause_conditions: vec![PauseCondition {
                reason: "CanaryPauseStep".into(),
                start_time: "2026-01-01T00:00:00Z".into(),
            }],
            current_step_index: Some(1),
            ..Default::default()
        };
        let after = RolloutStatus {
            phase: Some(Phase::Healthy),
            current_step_index: Some(2),
            ..Default::default()
        };
        let patch = status_patch(Some(&before), &after).unwrap();
        assert_eq!(
            patch,
            json!({"status": {"phase": "Healthy", "message": null, "controllerPause": null,
                              "pauseConditions": null, "currentStepIndex": 2}})
        );
        assert_eq!(apply(&before, &patch), after);
    }

    #[test]
    fn nothing_changed_writes_nothing_and_untouched_fields_stay_out() {
        let status = RolloutStatus {
            phase: Some(Phase::Healthy),
            stable_rs: Some("abc".into()),
            ..Default::default()
        };
        assert_eq!(status_patch(Some(&status), &status), None);
        let after = RolloutStatus {
            stable_rs: Some("def".into()),
            ..status.clone()
        };
        assert_eq!(
            status_patch(Some(&status), &after),
            Some(json!({"status": {"stableRS": "def"}}))
        );
        assert_eq!(
            status_patch(None, &after),
            Some(json!({"status": serde_json::to_value(&after).unwrap()}))
        );
    }

    #[test]
    fn nested_objects_are_patched_key_by_key() {
        let before = json!({"canary": {"weights": {"canary": {"weight": 20}, "verified": true}}});
        let after = json!({"canary": {"weights": {"canary": {"weight": 50}}}});
        assert_eq!(
            merge_diff(&before, &after),
            Some(json!({"canary": {"weights": {"canary": {"weight": 50}, "verified": null}}}))
        );
        assert_eq!(
            merge_diff(&json!({"a": [1, 2]}), &json!({"a": [1]})),
            Some(json!({"a": [1]}))
        );
    }
}
