//! Argo CD's view of Gantry Rollouts: a health check and resource
//! actions, as `argocd-cm` `resource.customizations` entries (Lua, which
//! Argo CD runs with gopher-lua's 5.1 semantics). Each action's Lua is
//! generated from `ops::edits`, the definition `gantry rollout` patches
//! from, so the two cannot drift; which actions are enabled follows the
//! same rules as `ops::patches` (checked against it by the tests).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::ops::{Edit, Op, Part, Written, edits};

pub const HEALTH: &str = include_str!("health.lua");
pub const DISCOVERY: &str = include_str!("discovery.lua");

/// An AnalysisTemplate is configuration: always healthy.
pub const TEMPLATE_HEALTH: &str = "hs = {}\nhs.status = \"Healthy\"\nreturn hs\n";

/// The actions, by the name Argo CD shows, with what they do.
pub fn actions() -> Vec<(&'static str, Op)> {
    let at = k8s_openapi::jiff::Timestamp::UNIX_EPOCH;
    vec![
        ("promote", Op::Promote { full: false }),
        ("promote-full", Op::Promote { full: true }),
        ("abort", Op::Abort),
        ("retry", Op::Retry),
        ("pause", Op::Pause),
        ("resume", Op::Resume),
        ("restart", Op::Restart { at }),
    ]
}

/// The action's Lua: `obj` changed as `gantry rollout` patches it (Argo
/// CD sends a status change to the status subresource).
pub fn action_lua(op: Op) -> String {
    let mut lua = String::from("-- Generated from rollout_core::ops::edits; do not edit.\n");
    let all = edits(op);
    if all.iter().any(|e| e.part == Part::Status) {
        lua.push_str("if obj.status == nil then obj.status = {} end\n");
    }
    for e in all {
        let _ = writeln!(lua, "{}", assignment(&e));
    }
    lua.push_str("return obj\n");
    lua
}

fn assignment(e: &Edit) -> String {
    let target = match e.part {
        Part::Spec => format!("obj.spec.{}", e.field),
        Part::Status => format!("obj.status.{}", e.field),
    };
    let value = match e.value {
        Written::Null => "nil".to_string(),
        Written::Bool(b) => b.to_string(),
        Written::Now => "os.date(\"!%Y-%m-%dT%H:%M:%SZ\")".to_string(),
    };
    if e.only_if_paused {
        format!("if obj.spec.paused == true then {target} = {value} end")
    } else {
        format!("{target} = {value}")
    }
}

/// The `argocd-cm` data entries, by key.
pub fn customizations() -> BTreeMap<String, String> {
    let group = crate::GROUP;
    let mut actions = String::from("discovery.lua: |\n");
    indent(&mut actions, DISCOVERY, 2);
    actions.push_str("definitions:\n");
    for (name, op) in self::actions() {
        let _ = writeln!(actions, "  - name: {name}\n    action.lua: |");
        indent(&mut actions, &action_lua(op), 6);
    }
    BTreeMap::from([
        (
            format!("resource.customizations.health.{group}_Rollout"),
            HEALTH.to_string(),
        ),
        (
            format!("resource.customizations.health.{group}_AnalysisTemplate"),
            TEMPLATE_HEALTH.to_string(),
        ),
        (
            format!("resource.customizations.actions.{group}_Rollout"),
            actions,
        ),
    ])
}

fn indent(out: &mut String, text: &str, by: usize) {
    for line in text.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{:by$}{line}", "");
        }
    }
}

/// `argocd-cm` with only these entries: a strategic-merge patch for a
/// kustomize install (`manifests/argocd` is that component), or applied
/// with `kubectl apply --server-side` to add the keys to a running Argo CD.
pub fn config_map() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "argocd-cm",
            "namespace": "argocd",
            "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"}
        },
        "data": customizations(),
    })
}

/// The same entries for the argo-cd Helm chart (`configs.cm`).
pub fn helm_values() -> serde_json::Value {
    serde_json::json!({"configs": {"cm": customizations()}})
}
