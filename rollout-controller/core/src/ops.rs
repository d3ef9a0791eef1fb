//! What the `gantry rollout` commands read and write, pure so every rule is
//! tested without a cluster: how a Rollout's state reads (`status`, `list`),
//! and what `promote|abort|retry|pause|resume` patch and when they make no
//! sense. The patches are the ones the controller reads (Argo Rollouts'
//! fields).

use crate::decide::pending_restart;
use crate::types::{Phase, Rollout};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Promote {
        full: bool,
    },
    Abort,
    Retry,
    Pause,
    Resume,
    /// Restart every pod created before `at`, one at a time.
    Restart {
        at: k8s_openapi::jiff::Timestamp,
    },
}

/// Merge patches for the main resource and the status subresource.
#[derive(Debug, Default, PartialEq)]
pub struct Patches {
    pub spec: Option<Value>,
    pub status: Option<Value>,
}

/// A field an operation writes: `spec.<field>` or `status.<field>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Spec,
    Status,
}

/// The value written; `Null` removes the field (merge-patch semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Null,
    Bool(bool),
    /// The operation's time (RFC 3339, UTC).
    Now,
}

/// One field an operation sets. The single definition of what each
/// operation writes: `patches` builds `gantry rollout`'s merge patches
/// from it, and the Argo CD actions are generated from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit {
    pub part: Part,
    pub field: &'static str,
    pub value: Written,
    /// Only written when `spec.paused` is true (promoting also unpauses).
    pub only_if_paused: bool,
}

const fn edit(part: Part, field: &'static str, value: Written) -> Edit {
    Edit {
        part,
        field,
        value,
        only_if_paused: false,
    }
}

const UNPAUSE: Edit = Edit {
    only_if_paused: true,
    ..edit(Part::Spec, "paused", Written::Bool(false))
};

/// What `op` writes when it makes sense.
pub fn edits(op: Op) -> Vec<Edit> {
    use Part::*;
    use Written::*;
    match op {
        Op::Promote { full: true } => vec![
            edit(Status, "promoteFull", Bool(true)),
            edit(Status, "pauseConditions", Null),
            UNPAUSE,
        ],
        Op::Promote { full: false } => vec![edit(Status, "pauseConditions", Null), UNPAUSE],
        Op::Abort => vec![edit(Status, "abort", Bool(true))],
        Op::Retry => vec![edit(Status, "abort", Bool(false))],
        Op::Pause => vec![edit(Spec, "paused", Bool(true))],
        Op::Resume => vec![edit(Spec, "paused", Bool(false))],
        Op::Restart { .. } => vec![edit(Spec, "restartAt", Now)],
    }
}

/// The patches for `op`, or why it makes no sense now.
pub fn patches(op: Op, rollout: &Rollout) -> Result<Patches, String> {
    if let Some(why) = refusal(op, rollout) {
        return Err(why);
    }
    let now = match op {
        Op::Restart { at } => at,
        _ => k8s_openapi::jiff::Timestamp::now(),
    };
    let spec_paused = rollout.spec.paused == Some(true);
    let mut patches = Patches::default();
    for e in edits(op) {
        if e.only_if_paused && !spec_paused {
            continue;
        }
        let value = match e.value {
            Written::Null => Value::Null,
            Written::Bool(b) => Value::Bool(b),
            Written::Now => Value::String(now.to_string()),
        };
        let (patch, key) = match e.part {
            Part::Spec => (&mut patches.spec, "spec"),
            Part::Status => (&mut patches.status, "status"),
        };
        patch.get_or_insert_with(|| json!({ key: {} }))[key][e.field] = value;
    }
    Ok(patches)
}

/// Why `op` makes no sense for the Rollout now, if it does not.
fn refusal(op: Op, rollout: &Rollout) -> Option<String> {
    let name = rollout.metadata.name.as_deref().unwrap_or("the rollout");
    let status = rollout.status.clone().unwrap_or_default();
    let spec_paused = rollout.spec.paused == Some(true);
    let waiting = !status.pause_conditions.is_empty();
    // A canary is under way while the newest template is not the stable one.
    let in_progress =
        status.current_pod_hash.is_some() && status.current_pod_hash != status.stable_rs;
    let retry_hint = format!("`gantry rollout retry {name}` starts the canary again");
    Some(match op {
        Op::Promote { .. } if status.abort => format!("{name} is aborted: {retry_hint}"),
        Op::Promote { full: true } if in_progress => return None,
        Op::Promote { full: false } if waiting => return None,
        Op::Promote { full: false } if in_progress => format!(
            "{name} is not waiting at a pause ({}): `--full` skips the remaining steps",
            at(&status)
        ),
        Op::Promote { .. } => format!(
            "{name} has no canary in progress ({}): nothing to promote",
            at(&status)
        ),
        Op::Abort if status.abort => format!("{name} is already aborted: {retry_hint}"),
        Op::Abort if in_progress => return None,
        Op::Abort => format!(
            "{name} has no canary in progress ({}): nothing to abort",
            at(&status)
        ),
        Op::Retry if status.abort => return None,
        Op::Retry => format!("{name} is not aborted ({}): nothing to retry", at(&status)),
        Op::Pause if spec_paused => format!("{name} is already paused (spec.paused)"),
        Op::Pause => return None,
        Op::Resume if spec_paused => return None,
        Op::Resume if waiting => format!(
            "{name} waits at a pause step, not spec.paused: `gantry rollout promote {name}` continues it"
        ),
        Op::Resume => format!("{name} is not paused"),
        Op::Restart { .. } if restart_pending(rollout) => format!(
            "{name} is still restarting the pods from before {}",
            rollout.spec.restart_at.as_deref().unwrap_or_default()
        ),
        Op::Restart { .. } => return None,
    })
}

/// The controller's own test; an unparsable restartAt is not pending (the
/// controller reports it as an invalid spec).
fn restart_pending(rollout: &Rollout) -> bool {
    let restart_at = rollout
        .spec
        .restart_at
        .as_deref()
        .and_then(|t| t.parse().ok());
    pending_restart(restart_at, rollout.status.as_ref()).is_some()
}

/// Where a Rollout is, for `status`' exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Healthy,
    Degraded,
    /// Progressing or paused, or a spec the controller has not seen yet.
    InProgress,
}

/// The state and a one-line description (`Paused at step 2/6: …`). A
/// status older than the spec (observedGeneration behind) is in progress
/// whatever it says.
pub fn state(rollout: &Rollout) -> (State, String) {
    let status = rollout.status.clone().unwrap_or_default();
    let generation = rollout.metadata.generation;
    if generation.is_some() && status.observed_generation != generation {
        return (
            State::InProgress,
            format!(
                "waiting for the controller to see generation {}",
                generation.unwrap_or_default()
            ),
        );
    }
    let state = match status.phase {
        Some(Phase::Healthy) => State::Healthy,
        Some(Phase::Degraded) => State::Degraded,
        _ => State::InProgress,
    };
    let line = match &status.message {
        Some(m) if !m.is_empty() => format!("{}: {m}", at(&status)),
        _ => at(&status),
    };
    (state, line)
}

/// `Healthy`, `Paused at step 2/6` …, for messages.
fn at(status: &crate::types::RolloutStatus) -> String {
    let phase = status
        .phase
        .map_or("no status yet".to_string(), |p| format!("{p:?}"));
    match (&status.step_display, status.phase) {
        (Some(step), Some(Phase::Progressing | Phase::Paused)) => format!("{phase} at step {step}"),
        _ => phase,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PauseCondition, RolloutStatus};

    fn rollout(paused: bool, status: RolloutStatus) -> Rollout {
        let mut r: Rollout = serde_json::from_value(json!({
            "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "backend"},
            "spec": {"selector": {}, "template": {}, "strategy": {}, "paused": paused}
        }))
        .unwrap();
        r.status = Some(status);
        r
    }

    fn canary(phase: Phase) -> RolloutStatus {
        RolloutStatus {
            phase: Some(phase),
            stable_rs: Some("aaa".into()),
            current_pod_hash: Some("bbb".into()),
            step_display: Some("2/6".into()),
            ..Default::default()
        }
    }

    fn healthy() -> RolloutStatus {
        RolloutStatus {
            phase: Some(Phase::Healthy),
            stable_rs: Some("aaa".into()),
            current_pod_hash: Some("aaa".into()),
            ..Default::default()
        }
    }

    fn waiting() -> RolloutStatus {
        RolloutStatus {
            pause_conditions: vec![PauseCondition {
                reason: "CanaryPauseStep".into(),
                start_time: "2026-01-01T00:00:00Z".into(),
            }],
            ..canary(Phase::Paused)
        }
    }

    fn aborted() -> RolloutStatus {
        RolloutStatus {
            abort: true,
            ..canary(Phase::Degraded)
        }
    }

    #[test]
    fn promote_ends_a_pause_and_full_skips_the_rest() {
        let p = patches(Op::Promote { full: false }, &rollout(false, waiting())).unwrap();
        assert_eq!(p.status, Some(json!({"status": {"pauseConditions": null}})));
        assert_eq!(p.spec, None);
        let p = patches(Op::Promote { full: false }, &rollout(true, waiting())).unwrap();
        assert_eq!(p.spec, Some(json!({"spec": {"paused": false}})));
        let p = patches(
            Op::Promote { full: true },
            &rollout(false, canary(Phase::Progressing)),
        )
        .unwrap();
        assert_eq!(
            p.status,
            Some(json!({"status": {"promoteFull": true, "pauseConditions": null}}))
        );
    }

    #[test]
    fn actions_that_make_no_sense_say_why() {
        let cases = [
            (
                Op::Promote { full: false },
                rollout(false, healthy()),
                "has no canary in progress (Healthy): nothing to promote",
            ),
            (
                Op::Promote { full: false },
                rollout(false, canary(Phase::Progressing)),
                "is not waiting at a pause (Progressing at step 2/6): `--full` skips",
            ),
            (
                Op::Promote { full: true },
                rollout(false, aborted()),
                "is aborted: `gantry rollout retry backend`",
            ),
            (Op::Abort, rollout(false, healthy()), "nothing to abort"),
            (Op::Abort, rollout(false, aborted()), "is already aborted"),
            (
                Op::Retry,
                rollout(false, canary(Phase::Paused)),
                "is not aborted (Paused at step 2/6): nothing to retry",
            ),
            (Op::Pause, rollout(true, healthy()), "is already paused"),
            (
                Op::Resume,
                rollout(false, waiting()),
                "waits at a pause step, not spec.paused: `gantry rollout promote backend`",
            ),
            (Op::Resume, rollout(false, healthy()), "is not paused"),
        ];
        for (op, r, want) in cases {
            let err = patches(op, &r).unwrap_err();
            assert!(err.contains(want), "{op:?}: {err}");
        }
    }

    #[test]
    fn restart_sets_restart_at_unless_one_is_under_way() {
        let at: k8s_openapi::jiff::Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let p = patches(Op::Restart { at }, &rollout(false, healthy())).unwrap();
        assert_eq!(
            p.spec,
            Some(json!({"spec": {"restartAt": "2026-01-01T12:00:00Z"}}))
        );
        let mut r = rollout(false, healthy());
        r.spec.restart_at = Some("2026-01-01T11:00:00Z".into());
        let err = patches(Op::Restart { at }, &r).unwrap_err();
        assert_eq!(
            err,
            "backend is still restarting the pods from before 2026-01-01T11:00:00Z"
        );
        r.status.as_mut().unwrap().restarted_at = Some("2026-01-01T11:00:00Z".into());
        assert!(patches(Op::Restart { at }, &r).is_ok());
        // Done is done however the time was spelled.
        r.spec.restart_at = Some("2026-01-01T11:00:00+00:00".into());
        assert!(patches(Op::Restart { at }, &r).is_ok());
    }

    #[test]
    fn state_reads_phase_step_message_and_generation() {
        let mut r = rollout(false, waiting());
        r.status.as_mut().unwrap().message = Some("waiting for promote".into());
        assert_eq!(
            state(&r),
            (
                State::InProgress,
                "Paused at step 2/6: waiting for promote".into()
            )
        );
        assert_eq!(
            state(&rollout(false, healthy())),
            (State::Healthy, "Healthy".into())
        );
        assert_eq!(state(&rollout(false, aborted())).0, State::Degraded);
        let mut r = rollout(false, healthy());
        r.metadata.generation = Some(3);
        r.status.as_mut().unwrap().observed_generation = Some(2);
        assert_eq!(
            state(&r),
            (
                State::InProgress,
                "waiting for the controller to see generation 3".into()
            )
        );
    }

    #[test]
    fn abort_retry_pause_resume_write_what_the_controller_reads() {
        let p = patches(Op::Abort, &rollout(false, waiting())).unwrap();
        assert_eq!(p.status, Some(json!({"status": {"abort": true}})));
        let p = patches(Op::Retry, &rollout(false, aborted())).unwrap();
        assert_eq!(p.status, Some(json!({"status": {"abort": false}})));
        let p = patches(Op::Pause, &rollout(false, healthy())).unwrap();
        assert_eq!(p.spec, Some(json!({"spec": {"paused": true}})));
        let p = patches(Op::Resume, &rollout(true, healthy())).unwrap();
        assert_eq!(p.spec, Some(json!({"spec": {"paused": false}})));
    }
}
