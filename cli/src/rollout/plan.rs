//! `gantry rollout plan`'s input and output: Rollouts, AnalysisTemplates
//! and Ingresses read from files or a rendered stream, and the timeline as
//! text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use rollout_core::display::human;
use rollout_core::plan::{Timeline, plan};
use rollout_core::types::{AnalysisTemplate, AnalysisTemplateSpec, Rollout};
use rollout_core::validate::validate;
use serde::Deserialize as _;

pub struct Options {
    /// Files, or `-` for stdin; each may hold several YAML documents.
    pub files: Vec<PathBuf>,
    /// Every *.yaml/*.yml below is read for AnalysisTemplates.
    pub templates_dir: Option<PathBuf>,
    pub json: bool,
}

#[derive(Default)]
struct Objects {
    rollouts: Vec<(String, Rollout)>,
    templates: BTreeMap<String, AnalysisTemplateSpec>,
    /// Each Ingress's annotations by namespace and name (the traffic
    /// gates' timing defaults from them).
    ingresses: BTreeMap<(String, String), BTreeMap<String, String>>,
}

/// Each Rollout's plan, rendered; an error names the file, document and
/// what is wrong, and for an invalid Rollout lists every problem the
/// controller would report.
pub fn plans(opts: &Options) -> Result<String> {
    let mut objects = Objects::default();
    for file in &opts.files {
        read_file(file, &mut objects)?;
    }
    if let Some(dir) = &opts.templates_dir {
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            let yaml = entry
                .path()
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml");
            if entry.file_type().is_file() && yaml {
                read_file(entry.path(), &mut objects)?;
            }
        }
    }
    if objects.rollouts.is_empty() {
        bail!("no Rollout (apiVersion gantry.dev/v1alpha1, kind Rollout) in the input");
    }
    let mut out = String::new();
    let mut plans = Vec::new();
    for (origin, rollout) in &objects.rollouts {
        let name = rollout.metadata.name.as_deref().unwrap_or("(unnamed)");
        let ingress = slowest_ingress(rollout, &objects.ingresses);
        let timeline = plan(rollout, &objects.templates, &ingress).map_err(|errors| {
            anyhow::anyhow!(
                "{origin}: Rollout {name} is not valid:\n  {}",
                errors.join("\n  ")
            )
        })?;
        if opts.json {
            plans.push(serde_json::json!({"rollout": name, "plan": timeline}));
        } else {
            render(&mut out, name, &timeline);
        }
    }
    if opts.json {
        out = serde_json::to_string_pretty(&plans)? + "\n";
    }
    Ok(out)
}

/// A file's text (`-`: stdin) and how to name it in messages.
pub fn read_input(path: &Path) -> Result<(String, String)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        Ok((text, "<stdin>".to_string()))
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok((text, path.display().to_string()))
    }
}

fn read_file(path: &Path, objects: &mut Objects) -> Result<()> {
    let (text, origin) = read_input(path)?;
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let where_ = format!("{origin} (document {})", i + 1);
        let value =
            serde_yaml::Value::deserialize(doc).with_context(|| format!("{where_}: not YAML"))?;
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        let api = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if kind == "Ingress" && api == "networking.k8s.io/v1" {
            let meta = |k: &str| {
                let v = value.get("metadata").and_then(|m| m.get(k));
                v.and_then(|v| v.as_str()).unwrap_or("default").to_string()
            };
            let annotations = value
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .cloned()
                .map(serde_yaml::from_value::<BTreeMap<String, String>>)
                .transpose()
                .with_context(|| format!("{where_}: Ingress annotations must be strings"))?
                .unwrap_or_default();
            objects
                .ingresses
                .insert((meta("namespace"), meta("name")), annotations);
            continue;
        }
        if api != "gantry.dev/v1alpha1" {
            continue;
        }
        match kind {
            "Rollout" => {
                let mut rollout: Rollout = serde_yaml::from_value(value)
                    .with_context(|| format!("{where_}: not a valid Rollout"))?;
                // An un-rendered base has none; kubectl would apply it there.
                rollout
                    .metadata
                    .namespace
                    .get_or_insert_with(|| "default".into());
                objects.rollouts.push((where_, rollout));
            }
            "AnalysisTemplate" => {
                let template: AnalysisTemplate = serde_yaml::from_value(value)
                    .with_context(|| format!("{where_}: not a valid AnalysisTemplate"))?;
                let name =
                    template.metadata.name.clone().with_context(|| {
                        format!("{where_}: AnalysisTemplate without metadata.name")
                    })?;
                objects.templates.insert(name, template.spec);
            }
            _ => {}
        }
    }
    Ok(())
}

fn render(out: &mut String, name: &str, t: &Timeline) {
    let _ = writeln!(
        out,
        "Rollout {name}: {} replicas, {} steps",
        t.replicas,
        t.steps.len()
    );
    let _ = writeln!(out);
    // Wide enough for the longest step (a header route's conditions).
    let width = t
        .steps
        .iter()
        .map(|s| s.description.chars().count())
        .max()
        .unwrap_or(0)
        .max(34);
    let _ = writeln!(
        out,
        "  {:>4}  {:<width$} {:>9}  {:>14}  {:>8}",
        "STEP", "", "AT", "CANARY/STABLE", "PODS"
    );
    for s in &t.steps {
        let promote = if s.waits_for_promote {
            "  ← waits for promote"
        } else {
            ""
        };
        let gated = match s.traffic_gate_seconds {
            0 => String::new(),
            secs => format!(
                "  ({} at traffic gates)",
                human(std::time::Duration::from_secs(secs))
            ),
        };
        let _ = writeln!(
            out,
            "  {:>4}  {:<width$} {:>9}  {:>14}  {:>8}{promote}{gated}",
            format!("{}/{}", s.step, t.steps.len()),
            s.description,
            format!(
                "+{}",
                human(std::time::Duration::from_secs(s.completed_after_seconds))
            ),
            format!("{}% / {}%", s.canary_weight, 100 - s.canary_weight),
            format!("{} + {}", s.canary_replicas, s.stable_replicas),
        );
    }
    let _ = writeln!(out);
    for g in &t.gates {
        let what = if g.run == rollout_core::validate::BACKGROUND {
            format!("Background analysis from step {}", g.step)
        } else {
            format!("Analysis at step {}", g.step)
        };
        let _ = match g.worst_case_to_stable_seconds {
            Some(worst) => writeln!(
                out,
                "{what}: worst case {} from its start to 100% stable",
                human(std::time::Duration::from_secs(worst))
            ),
            None => writeln!(
                out,
                "{what}: the rollout completes before it could fail (every pause promoted at once)"
            ),
        };
        for m in &g.metrics {
            let mut limits = Vec::new();
            if let Some(i) = &m.interval {
                limits.push(format!("every {i}"));
            }
            if let Some(c) = m.count {
                limits.push(format!("{c} measurement(s)"));
            }
            if let Some(d) = &m.initial_delay {
                limits.push(format!("after {d}"));
            }
            limits.push(format!("failureLimit {}", m.failure_limit));
            limits.push(format!(
                "consecutiveErrorLimit {}",
                m.consecutive_error_limit
            ));
            let dry_run = if m.dry_run {
                " (dry run: recorded, never fails the gate)"
            } else {
                ""
            };
            let _ = writeln!(out, "  {}: {}{dry_run}", m.name, limits.join(", "));
            if let Some(c) = &m.success_condition {
                let _ = writeln!(out, "    success: {c}");
            }
            if let Some(c) = &m.failure_condition {
                let _ = writeln!(out, "    failure: {c}");
            }
            for line in m.query.trim().lines() {
                let _ = writeln!(out, "    | {}", line.trim_end());
            }
        }
        let _ = writeln!(out);
    }
    for note in &t.notes {
        let _ = writeln!(out, "{note}");
    }
    if t.promotion_seconds > 0 {
        let _ = writeln!(
            out,
            "Promotion after the last step: {} (all traffic to the canary, the stable Service switched, its targets healthy, the traffic back).",
            human(std::time::Duration::from_secs(t.promotion_seconds))
        );
    }
    let manual = match t.manual_promotions {
        0 => String::new(),
        n => format!(", plus {n} manual promotion(s)"),
    };
    let _ = writeln!(
        out,
        "Minimum duration: {}{manual} (every analysis passing).",
        human(std::time::Duration::from_secs(t.min_duration_seconds))
    );
    if let Some(worst) = t
        .gates
        .iter()
        .filter_map(|g| g.worst_case_to_stable_seconds)
        .max()
    {
        let _ = writeln!(
            out,
            "Worst case from a failing gate's start to all traffic on stable: {}.",
            human(std::time::Duration::from_secs(worst))
        );
    }
}

/// The annotations of the Rollout's Ingress (of several, the one whose ALB
/// takes longest to settle and drain, as the controller waits for it),
/// when the input holds it.
fn slowest_ingress(
    rollout: &Rollout,
    ingresses: &BTreeMap<(String, String), BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(alb) = validate(&rollout.spec).ok().and_then(|p| p.alb) else {
        return BTreeMap::new();
    };
    let ns = rollout.metadata.namespace.clone().unwrap_or_default();
    alb.ingresses
        .iter()
        .filter_map(|name| ingresses.get(&(ns.clone(), name.clone())))
        .max_by_key(|a| alb.gates.settle(&alb, a) + alb.gates.drain(&alb, a))
        .cloned()
        .unwrap_or_default()
}
