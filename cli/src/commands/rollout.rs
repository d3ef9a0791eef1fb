//! `gantry rollout …`. `plan`: what a Rollout will do, before it is
//! applied: reads Rollouts and AnalysisTemplates from files or a rendered
//! stream (`kubectl kustomize overlays/prod | gantry rollout plan -f -`),
//! validates them as the controller does and prints the timeline its
//! decision code follows on a simulated cluster. `list`, `status`, `get`:
//! read (and watch) the cluster. `promote`, `abort`, `retry`, `pause`,
//! `resume`, `restart`: the patches of `rollout_core::ops`, sent to the cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use rollout_core::plan::{Timeline, human, plan};
use rollout_core::types::{AnalysisTemplate, AnalysisTemplateSpec, Rollout};
use serde::Deserialize as _;

use crate::rollout_view::View;
use rollout_core::ops::{Op, State, patches, state};

/// `status`: the Rollout's state now, or (`watch`) each change until it is
/// Healthy or Degraded, at most `timeout`. Prints one line per change.
pub async fn status(
    client: kube::Client,
    namespace: &str,
    name: &str,
    watch: bool,
    timeout: Option<std::time::Duration>,
    out: &mut impl std::io::Write,
) -> Result<State> {
    let api: Api<Rollout> = Api::namespaced(client, namespace);
    if !watch {
        let rollout = get(&api, namespace, name).await?;
        let (state, line) = state(&rollout);
        writeln!(out, "{line}")?;
        return Ok(state);
    }
    let mut changes = changes(api, name);
    let mut last = None;
    let follow = async {
        while let Some(rollout) = changes
            .try_next()
            .await
            .with_context(|| format!("cannot watch Rollout {namespace}/{name}"))?
        {
            let (state, line) = state(&rollout);
            if last.as_ref() != Some(&line) {
                writeln!(out, "{line}")?;
                last = Some(line);
            }
            if state != State::InProgress {
                return Ok(state);
            }
        }
        bail!("the watch on Rollout {namespace}/{name} ended")
    };
    match timeout {
        None => follow.await,
        Some(limit) => match tokio::time::timeout(limit, follow).await {
            Ok(result) => result,
            Err(_) => {
                eprintln!("timed out after {} still in progress", human(limit));
                Ok(State::InProgress)
            }
        },
    }
}

/// `get`: the Rollout, its ReplicaSets, analysis and events; with `watch`,
/// again at every change until it is Healthy or Degraded. On a terminal the
/// view is redrawn in place; otherwise (CI logs) each changed view is
/// printed after the previous one.
pub async fn get_view(
    client: kube::Client,
    namespace: &str,
    name: &str,
    watch: bool,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<()> {
    let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let show = |view: View, out: &mut dyn std::io::Write, redraw: bool| -> Result<()> {
        if json {
            writeln!(out, "{}", serde_json::to_string_pretty(&view.json())?)?;
        } else {
            if redraw {
                write!(out, "\x1b[2J\x1b[H")?;
            }
            write!(out, "{}", view.text(jiff::Timestamp::now()))?;
        }
        Ok(())
    };
    if !watch {
        let rollout = get(&api, namespace, name).await?;
        return show(view_of(&client, rollout).await?, out, false);
    }
    let terminal = !json && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut changes = changes(api, name);
    let mut last = None;
    while let Some(rollout) = changes
        .try_next()
        .await
        .with_context(|| format!("cannot watch Rollout {namespace}/{name}"))?
    {
        let settled = state(&rollout).0 != State::InProgress;
        let view = view_of(&client, rollout).await?;
        // Compared without the clock ("… ago" reads 0s against the epoch),
        // so only a real change redraws.
        let text = view.text(jiff::Timestamp::UNIX_EPOCH);
        if last.as_ref() != Some(&text) {
            if last.is_some() && !terminal && !json {
                writeln!(out, "---")?;
            }
            show(view, out, terminal)?;
            last = Some(text);
        }
        if settled {
            return Ok(());
        }
    }
    bail!("the watch on Rollout {namespace}/{name} ended")
}

/// The ReplicaSets (by the Rollout's selector) and events around a Rollout.
async fn view_of(client: &kube::Client, rollout: Rollout) -> Result<View> {
    let namespace = rollout.metadata.namespace.clone().unwrap_or_default();
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let selector = rollout_core::hash::selector_string(&rollout.spec.selector).unwrap_or_default();
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    let replica_sets = replica_sets
        .list(&ListParams::default().labels(&selector))
        .await
        .with_context(|| format!("cannot list the ReplicaSets of {namespace}/{name}"))?
        .items;
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let events = events
        .list(
            &ListParams::default().fields(&format!("regarding.kind=Rollout,regarding.name={name}")),
        )
        .await
        .with_context(|| format!("cannot list the events of {namespace}/{name}"))?
        .items;
    Ok(View {
        rollout,
        replica_sets,
        events,
    })
}

/// `list`: one line per Rollout in `namespace` (all namespaces: `None`).
pub async fn list(client: kube::Client, namespace: Option<&str>) -> Result<String> {
    let api: Api<Rollout> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let rollouts = api
        .list(&ListParams::default())
        .await
        .context("cannot list Rollouts")?;
    if rollouts.items.is_empty() {
        return Ok(match namespace {
            Some(ns) => format!("No Rollouts in namespace {ns}.\n"),
            None => "No Rollouts in any namespace.\n".to_string(),
        });
    }
    let mut rows = vec![
        [
            "NAMESPACE",
            "NAME",
            "PHASE",
            "STEP",
            "CANARY",
            "READY",
            "MESSAGE",
        ]
        .map(String::from),
    ];
    for r in &rollouts.items {
        let status = r.status.clone().unwrap_or_default();
        let weight = status.canary.weights.as_ref().map_or("-".to_string(), |w| {
            let unverified = if w.verified == Some(false) {
                " (unverified)"
            } else {
                ""
            };
            format!("{}%{unverified}", w.canary.weight)
        });
        rows.push([
            r.metadata.namespace.clone().unwrap_or_default(),
            r.metadata.name.clone().unwrap_or_default(),
            status.phase.map_or("-".into(), |p| format!("{p:?}")),
            status.step_display.clone().unwrap_or_else(|| "-".into()),
            weight,
            format!(
                "{}/{}",
                status.available_replicas.unwrap_or(0),
                r.spec.replicas.unwrap_or(1)
            ),
            state(r).1,
        ]);
    }
    if namespace.is_some() {
        for row in &mut rows {
            row[0].clear();
        }
    }
    Ok(table(&rows))
}

/// Columns padded to their widest cell; a column empty in every row
/// (NAMESPACE within one namespace) is left out.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let keep: Vec<usize> = (0..N)
        .filter(|&c| rows[1..].iter().any(|r| !r[c].is_empty()))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = keep
            .iter()
            .map(|&c| {
                let width = rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
                format!("{:<width$}", row[c])
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// The Rollout as it is now, then at every change.
fn changes(
    api: Api<Rollout>,
    name: &str,
) -> futures::stream::BoxStream<'static, Result<Rollout, watcher::Error>> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher(api, config).applied_objects().boxed()
}

async fn get(api: &Api<Rollout>, namespace: &str, name: &str) -> Result<Rollout> {
    api.get_opt(name)
        .await
        .with_context(|| format!("cannot read Rollout {namespace}/{name}"))?
        .with_context(|| format!("Rollout {name} not found in namespace {namespace}"))
}

/// Runs `work` against the cluster from the kubeconfig (`KUBECONFIG`, or
/// the in-cluster config) in `namespace`, else the context's namespace.
fn in_cluster<T>(
    namespace: Option<String>,
    work: impl AsyncFnOnce(kube::Client, String) -> Result<T>,
) -> Result<T> {
    super::runtime()?.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("cannot connect to the cluster (is KUBECONFIG set?)")?;
        let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
        work(client, namespace).await
    })
}

pub fn act_command(namespace: Option<String>, name: &str, op: Op) -> Result<()> {
    in_cluster(namespace, async |client, ns| {
        println!("{}", act(client, &ns, name, op).await?);
        Ok(())
    })
}

pub fn status_command(
    namespace: Option<String>,
    name: &str,
    watch: bool,
    timeout: Option<std::time::Duration>,
) -> Result<State> {
    in_cluster(namespace, async |client, ns| {
        let out = &mut std::io::stdout();
        status(client, &ns, name, watch, timeout, out).await
    })
}

pub fn get_command(namespace: Option<String>, name: &str, watch: bool, json: bool) -> Result<()> {
    in_cluster(namespace, async |client, ns| {
        let out = &mut std::io::stdout();
        get_view(client, &ns, name, watch, json, out).await
    })
}

pub fn list_command(namespace: Option<String>, all_namespaces: bool) -> Result<()> {
    in_cluster(namespace, async |client, ns| {
        let scope = (!all_namespaces).then_some(ns.as_str());
        print!("{}", list(client, scope).await?);
        Ok(())
    })
}

/// Reads the Rollout, checks `op` makes sense in its current state, and
/// writes the spec and/or status patch. Returns what was done, for printing.
pub async fn act(client: kube::Client, namespace: &str, name: &str, op: Op) -> Result<String> {
    let api: Api<Rollout> = Api::namespaced(client, namespace);
    let rollout = get(&api, namespace, name).await?;
    let p = patches(op, &rollout).map_err(anyhow::Error::msg)?;
    let params = PatchParams::default();
    if let Some(spec) = &p.spec {
        api.patch(name, &params, &Patch::Merge(spec))
            .await
            .with_context(|| format!("cannot patch Rollout {namespace}/{name}"))?;
    }
    if let Some(status) = &p.status {
        api.patch_status(name, &params, &Patch::Merge(status))
            .await
            .with_context(|| format!("cannot patch the status of Rollout {namespace}/{name}"))?;
    }
    let done = match op {
        Op::Promote { full: true } => "fully promoted",
        Op::Promote { full: false } => "promoted",
        Op::Abort => "aborted",
        Op::Retry => "retried",
        Op::Pause => "paused",
        Op::Resume => "resumed",
        Op::Restart { .. } => "restarting (one pod at a time)",
    };
    Ok(format!("rollout '{name}' {done}"))
}

pub struct PlanOptions {
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
}

/// Prints each Rollout's plan; an error names the file, document and what
/// is wrong, and for an invalid Rollout lists every problem the controller
/// would report.
pub fn plan_command(opts: &PlanOptions) -> Result<()> {
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
        let timeline = plan(rollout, &objects.templates).map_err(|errors| {
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
    print!("{out}");
    Ok(())
}

fn read_file(path: &Path, objects: &mut Objects) -> Result<()> {
    let (text, origin) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        (text, "<stdin>".to_string())
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        (text, path.display().to_string())
    };
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
        if api != "gantry.dev/v1alpha1" {
            continue;
        }
        match kind {
            "Rollout" => {
                let rollout: Rollout = serde_yaml::from_value(value)
                    .with_context(|| format!("{where_}: not a valid Rollout"))?;
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
    let _ = writeln!(
        out,
        "  {:>4}  {:<34} {:>9}  {:>14}  {:>8}",
        "STEP", "", "AT", "CANARY/STABLE", "PODS"
    );
    for s in &t.steps {
        let promote = if s.waits_for_promote {
            "  ← waits for promote"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {:>4}  {:<34} {:>9}  {:>14}  {:>8}{promote}",
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
        let _ = writeln!(
            out,
            "{what}: worst case {} from its start to 100% stable",
            human(std::time::Duration::from_secs(
                g.worst_case_to_stable_seconds
            ))
        );
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
            let _ = writeln!(out, "  {}: {}", m.name, limits.join(", "));
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
    let manual = match t.manual_promotions {
        0 => String::new(),
        n => format!(", plus {n} manual promotion(s)"),
    };
    let _ = writeln!(
        out,
        "Minimum duration: {}{manual} (every analysis passing).",
        human(std::time::Duration::from_secs(t.min_duration_seconds))
    );
    if let Some(worst) = t.gates.iter().map(|g| g.worst_case_to_stable_seconds).max() {
        let _ = writeln!(
            out,
            "Worst case from a failing gate's start to all traffic on stable: {}.",
            human(std::time::Duration::from_secs(worst))
        );
    }
}
