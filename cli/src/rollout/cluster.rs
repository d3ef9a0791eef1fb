//! The cluster side of `gantry rollout`: read and watch Rollouts (`status`,
//! `get_view`, `list`) and send a human's operations (`act`, the patches of
//! `rollout_core::ops`).

use std::fmt::Write as _;

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use rollout_core::display::human;
use rollout_core::ops::{Op, State, patches, state};
use rollout_core::types::Rollout;

use crate::rollout::view::View;

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
