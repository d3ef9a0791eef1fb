//! Argo CD's health check and actions for Gantry Rollouts, run by a real
//! Lua 5.1 interpreter (Argo CD's gopher-lua has 5.1 semantics) against
//! Rollouts whose status the controller's own decision wrote on the
//! simulated cluster, at every phase of two releases: the health must say
//! what `gantry rollout status` says, each action must be enabled exactly
//! when `gantry rollout` would act, and must change exactly what
//! `gantry rollout` patches.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use rollout_core::argocd;
use rollout_core::ops::{self, Op, State};
use rollout_core::simulate::Simulation;
use rollout_core::status_patch::merge_diff;
use rollout_core::types::{AnalysisPhase, Phase, Rollout};
use serde_json::{Value, json};

fn rollout() -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "backend", "namespace": "shop", "generation": 1},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "backend"}},
            "template": {"metadata": {"labels": {"app": "backend"}},
                         "spec": {"containers": [{"name": "api", "image": "backend:1"}]}},
            "strategy": {"canary": {"canaryService": "backend-canary", "stableService": "backend",
                "trafficRouting": {"alb": {"ingress": "shop", "servicePort": 80,
                    "targetHealth": {"settleSeconds": 0, "drainSeconds": 0}}},
                "steps": [{"setWeight": 25}, {"pause": {}},
                          {"analysis": {"templates": [{"templateName": "errors"}]}},
                          {"setWeight": 50}, {"pause": {"duration": "1m"}}]}}}
    }))
    .unwrap()
}

/// Every Rollout state the controller writes on the way: no status yet,
/// the first deploy, a release paused, promoted, analysed, timed pause,
/// Healthy; spec.paused and resumed; a release whose analysis fails
/// (aborted, Degraded), retried; a restart; an invalid spec; and each
/// spec change before the controller saw it.
fn cases() -> Vec<Rollout> {
    let mut sim = Simulation::new(rollout());
    sim.world.templates.insert(
        "errors".into(),
        serde_yaml::from_str(
            "metrics: [{name: errors, successCondition: 'result[0] < 1', \
             provider: {prometheus: {address: 'http://p', query: up}}}]",
        )
        .unwrap(),
    );
    sim.verdict = Some(AnalysisPhase::Successful);
    let mut seen = Vec::new();
    // The state as changed (a spec the controller has not seen yet), then
    // after each reconcile.
    let mut record = |sim: &mut Simulation, reconciles: usize| {
        seen.push(sim.rollout.clone());
        for _ in 0..reconciles {
            sim.step();
            seen.push(sim.rollout.clone());
            sim.advance(SignedDuration::from_secs(20));
        }
    };
    record(&mut sim, 6);
    for (image, verdict) in [
        ("backend:2", AnalysisPhase::Successful),
        ("backend:3", AnalysisPhase::Failed),
    ] {
        sim.verdict = Some(verdict);
        release(&mut sim, image);
        record(&mut sim, 4);
        let _ = sim.operate(Op::Pause);
        record(&mut sim, 2);
        let _ = sim.operate(Op::Resume);
        record(&mut sim, 2);
        sim.promote();
        record(&mut sim, 12);
    }
    let _ = sim.operate(Op::Retry);
    sim.verdict = Some(AnalysisPhase::Successful);
    record(&mut sim, 3);
    let _ = sim.operate(Op::Promote { full: true });
    record(&mut sim, 12);
    let _ = sim.operate(Op::Restart { at: sim.world.now });
    record(&mut sim, 6);
    sim.rollout.spec.strategy.canary.as_mut().unwrap().steps[0].set_weight = Some(150);
    *sim.rollout.metadata.generation.get_or_insert(0) += 1;
    record(&mut sim, 2);
    seen
}

fn release(sim: &mut Simulation, image: &str) {
    let spec = sim.rollout.spec.template.spec.as_mut().unwrap();
    spec.containers[0].image = Some(image.into());
    *sim.rollout.metadata.generation.get_or_insert(0) += 1;
}

/// `value` as a Lua table constructor, as Argo CD hands objects to Lua.
fn lua_value(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_value).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua_value(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// Lua 5.1 that prints a table as JSON (an empty table as `{}`).
const TO_JSON: &str = r#"
local function to_json(v)
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" or t == "number" then return tostring(v) end
  if t == "string" then return string.format("%q", v) end
  local n, keys = #v, {}
  for k in pairs(v) do table.insert(keys, k) end
  if n > 0 and n == #keys then
    local parts = {}
    for i = 1, n do parts[i] = to_json(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do table.insert(parts, string.format("%q", k) .. ":" .. to_json(v[k])) end
  return "{" .. table.concat(parts, ",") .. "}"
end
"#;

/// Runs `script` as Argo CD would (global `obj`) and returns what it
/// returned, as JSON.
fn run_lua(obj: &Value, script: &str) -> Value {
    let program = format!(
        "{TO_JSON}\nobj = {}\nlocal result = assert(loadstring({script:?}))()\nio.write(to_json(result))\n",
        lua_value(obj)
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 is not installed: run tests/setup");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "lua5.1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script returned a table")
}

/// What Argo CD should show for `rollout`: the CLI's state and line.
fn expected_health(rollout: &Rollout) -> (&'static str, String) {
    let (state, line) = ops::state(rollout);
    let current =
        rollout.status.as_ref().and_then(|s| s.observed_generation) == rollout.metadata.generation;
    let phase = rollout.status.as_ref().and_then(|s| s.phase);
    let status = match state {
        State::Healthy => "Healthy",
        State::Degraded => "Degraded",
        State::InProgress if current && phase == Some(Phase::Paused) => "Suspended",
        State::InProgress => "Progressing",
    };
    (status, line)
}

#[test]
fn health_says_what_gantry_rollout_status_says_at_every_phase() {
    let mut shown = BTreeMap::<&str, usize>::new();
    for rollout in cases() {
        let obj = serde_json::to_value(&rollout).unwrap();
        let hs = run_lua(&obj, argocd::HEALTH);
        let (status, message) = expected_health(&rollout);
        assert_eq!(hs["status"], status, "{obj:#}");
        assert_eq!(hs["message"], message, "{obj:#}");
        *shown.entry(status).or_default() += 1;
        if message.starts_with("waiting for the controller to see generation") {
            *shown.entry("unobserved spec").or_default() += 1;
        }
    }
    for status in [
        "Healthy",
        "Progressing",
        "Suspended",
        "Degraded",
        "unobserved spec",
    ] {
        assert!(shown.contains_key(status), "no case is {status}: {shown:?}");
    }
}

#[test]
fn analysis_templates_are_healthy() {
    let hs = run_lua(
        &json!({"kind": "AnalysisTemplate", "spec": {}}),
        argocd::TEMPLATE_HEALTH,
    );
    assert_eq!(hs["status"], "Healthy");
}

/// `value` as it comes back from Lua, which cannot tell an empty array
/// from an empty object.
fn as_lua_returns(value: &Value) -> Value {
    match value {
        Value::Array(items) if items.is_empty() => json!({}),
        Value::Array(items) => Value::Array(items.iter().map(as_lua_returns).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), as_lua_returns(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn actions_are_enabled_when_gantry_would_act_and_patch_what_it_patches() {
    let mut enabled = BTreeMap::<&str, usize>::new();
    for rollout in cases() {
        let obj = serde_json::to_value(&rollout).unwrap();
        let discovered = run_lua(&obj, argocd::DISCOVERY);
        for (name, op) in argocd::actions() {
            let now = Timestamp::now();
            let op = match op {
                Op::Restart { .. } => Op::Restart { at: now },
                other => other,
            };
            let expected = ops::patches(op, &rollout);
            assert_eq!(
                discovered[name]["disabled"],
                expected.is_err(),
                "{name}: gantry says {expected:?} for {obj:#}"
            );
            let Ok(expected) = expected else { continue };
            *enabled.entry(name).or_default() += 1;
            let after = run_lua(&obj, &argocd::action_lua(op));
            let obj = as_lua_returns(&obj);
            let mut diff = merge_diff(&obj, &after).unwrap_or(json!({}));
            if let Some(at) = diff.pointer_mut("/spec/restartAt") {
                // os.date has whole seconds; the CLI's clock, more.
                let lua: Timestamp = at.as_str().unwrap().parse().unwrap();
                assert!((lua - now).get_seconds().abs() <= 2, "{lua} vs {now}");
                *at = json!(now.to_string());
            }
            // The same change as gantry's patches, and to the same parts
            // (Argo CD sends a status change to the status subresource).
            let mut patched = obj.clone();
            for patch in [&expected.spec, &expected.status].into_iter().flatten() {
                json_patch::merge(&mut patched, patch);
            }
            let mut by_lua = obj.clone();
            json_patch::merge(&mut by_lua, &diff);
            assert_eq!(merge_diff(&patched, &by_lua), None, "{name} on {obj:#}");
            let parts = [("spec", &expected.spec), ("status", &expected.status)];
            for key in diff.as_object().unwrap().keys() {
                assert!(
                    parts
                        .iter()
                        .any(|(part, patch)| part == key && patch.is_some()),
                    "{name} changed {key}, which gantry does not patch"
                );
            }
        }
    }
    for (name, _) in argocd::actions() {
        assert!(
            enabled.contains_key(name),
            "{name} was never enabled: {enabled:?}"
        );
    }
}
