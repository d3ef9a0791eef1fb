//! The dashboard's HTML, rendered on the server (maud escapes every value).
//! A page is a shell around a live fragment; the event stream sends the
//! fragment again at every change. Pure: the server gathers, this renders.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::events::v1::Event;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use rollout_core::ops::{patches, state};
use rollout_core::types::{AnalysisTemplate, Rollout, RolloutStatus};

use super::actions::ACTIONS;
use super::chart;
use super::history::Series;
use crate::rollout::view::{
    ago, event_time, header_routes, ping_pong_roles, pod_share, proof, role, steps,
};

/// The page around a fragment: styles, script, the CSRF token for actions,
/// and where the fragment's updates come from.
pub fn shell(title: &str, csrf: &str, updates: &str, fragment: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(csrf);
                title { (title) " · gantry" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header {
                    a.home href="/" { "gantry rollouts" }
                    span #connection { }
                }
                div #notice role="status" hidden {}
                main #live data-updates=(updates) { (fragment) }
            }
        }
    }
}

/// Problems with the watches (e.g. RBAC), on every page.
fn problems(problems: &[String]) -> Markup {
    html! {
        @for p in problems { p.problem { (p) } }
    }
}

fn phase(status: &RolloutStatus) -> String {
    status.phase.map_or("Pending".into(), |p| format!("{p:?}"))
}

/// `canary 20% / stable 80%` and whether AWS shows them; without traffic
/// routing, the pods each side has.
fn traffic<'a>(r: &Rollout, replica_sets: impl Iterator<Item = &'a ReplicaSet>) -> Markup {
    let status = r.status.clone().unwrap_or_default();
    let Some(w) = &status.canary.weights else {
        return html! { (pod_share(r, replica_sets).unwrap_or_else(|| "–".into())) };
    };
    let class = match w.verified {
        Some(true) => "ok",
        Some(false) => "warn",
        None => "",
    };
    html! {
        span.weight { "canary " (w.canary.weight) "% / stable " (w.stable.weight) "%" }
        " " small.(class) { (proof(w.verified)) }
    }
}

/// The list of Rollouts.
pub fn index(
    rollouts: &[Arc<Rollout>],
    replica_sets: &[Arc<ReplicaSet>],
    issues: &[String],
) -> Markup {
    html! {
        (problems(issues))
        @if rollouts.is_empty() {
            p.empty { "No Rollouts here yet." }
        } @else {
            table.rollouts {
                thead { tr { th { "Rollout" } th { "Phase" } th { "Step" } th { "Traffic" } th { "Images" } th { "ReplicaSets" } } }
                tbody {
                    @for r in rollouts {
                        @let ns = r.metadata.namespace.as_deref().unwrap_or_default();
                        @let name = r.metadata.name.as_deref().unwrap_or_default();
                        @let status = r.status.clone().unwrap_or_default();
                        tr {
                            td { a href={ "/rollouts/" (ns) "/" (name) } { (ns) "/" (name) } }
                            td { span.phase.(phase(&status)) { (phase(&status)) } }
                            td { (status.step_display.as_deref().unwrap_or("–")) }
                            td { (traffic(r, owned(r, replica_sets).into_iter())) }
                            td { @for image in r.images() { code { (image) } br; } }
                            td {
                                @for rs in owned(r, replica_sets) {
                                    @let s = rs.status.clone().unwrap_or_default();
                                    (role(rs, &status)) " " (s.ready_replicas.unwrap_or(0)) "/"
                                    (rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)) br;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The ReplicaSets a Rollout owns, newest first.
pub fn owned<'a>(r: &Rollout, replica_sets: &'a [Arc<ReplicaSet>]) -> Vec<&'a ReplicaSet> {
    let uid = r.metadata.uid.as_deref();
    let mut owned: Vec<&ReplicaSet> = replica_sets
        .iter()
        .map(|rs| rs.as_ref())
        .filter(|rs| {
            rs.metadata.namespace == r.metadata.namespace
                && rs.metadata.owner_references.iter().flatten().any(|o| {
                    o.kind == "Rollout"
                        && (Some(o.uid.as_str()) == uid || uid.is_none())
                        && Some(&o.name) == r.metadata.name.as_ref()
                })
        })
        .collect();
    owned.sort_by_key(|rs| std::cmp::Reverse(rs.metadata.creation_timestamp.clone()));
    owned
}

/// What one Rollout's page shows.
pub struct Detail<'a> {
    pub rollout: &'a Rollout,
    pub replica_sets: Vec<&'a ReplicaSet>,
    pub events: Vec<&'a Event>,
    pub templates: Vec<&'a AnalysisTemplate>,
    pub series: Series,
    pub problems: Vec<String>,
    pub now: Timestamp,
}

/// One Rollout: state, actions, steps, charts, ReplicaSets, events.
pub fn rollout(d: &Detail) -> Markup {
    let r = d.rollout;
    let status = r.status.clone().unwrap_or_default();
    let ns = r.metadata.namespace.as_deref().unwrap_or_default();
    let name = r.metadata.name.as_deref().unwrap_or_default();
    html! {
        (problems(&d.problems))
        h1 { (ns) "/" (name) " " span.phase.(phase(&status)) #phase { (phase(&status)) } }
        p #state { (state(r).1) }
        dl.facts {
            dt { "Step" } dd #step { (status.step_display.as_deref().unwrap_or("–")) }
            dt { "Traffic" } dd #traffic { (traffic(r, d.replica_sets.iter().copied())) }
            @if let Some(roles) = ping_pong_roles(r) {
                dt { "Services" } dd { (roles) }
            }
            @if let Some(routes) = header_routes(r) {
                dt { "Routes" } dd #routes { (routes) }
            }
            @if let Some(alb) = status.alb.as_ref().and_then(|a| a.message.as_deref()) {
                dt { "ALB" } dd { (alb) }
            }
            // What traffic or a scale-down waits for at the ALB.
            @if !status.traffic_gates.is_empty() {
                dt { "Waiting" }
                dd #gates {
                    @for g in &status.traffic_gates {
                        span.gate { (g.message) " — since " (crate::rollout::view::ago(&g.since, d.now)) } br;
                    }
                }
            }
            dt { "Images" } dd { @for image in r.images() { code { (image) } " " } }
        }
        (actions(r, ns, name, d.now))
        div.columns {
            section {
                h2 { "Steps" }
                (timeline(r))
            }
            section {
                h2 { "Canary weight" }
                figure #chart-weight { (PreEscaped(chart::weights(&d.series.weights, d.now))) }
            }
        }
        (analysis(d))
        (replica_sets(&d.replica_sets, &status))
        (events(&d.events, d.now))
    }
}

/// A button per operation; disabled, with the reason, when it makes no sense.
fn actions(r: &Rollout, ns: &str, name: &str, now: Timestamp) -> Markup {
    html! {
        div.actions {
            @for a in &ACTIONS {
                @let refusal = patches((a.op)(now), r).err();
                button data-action=(a.slug)
                    data-url={ "/api/rollouts/" (ns) "/" (name) "/" (a.slug) }
                    data-confirm={ (a.confirm) " " (ns) "/" (name) "?" }
                    disabled[refusal.is_some()]
                    title=[refusal.as_deref()] { (a.label) }
            }
        }
    }
}

fn timeline(r: &Rollout) -> Markup {
    match steps(r) {
        Err(errors) => html! {
            p.problem { "Invalid spec:" }
            ul { @for e in errors { li { (e) } } }
        },
        Ok(steps) => html! {
            ol.steps #steps {
                @for (i, (mark, step)) in steps.iter().enumerate() {
                    @let class = match mark { '✔' => "done", '►' => "current", _ => "pending" };
                    li.(class) { span.mark { (mark) } " " (i + 1) ". " (step) }
                }
            }
        },
    }
}

/// Each analysis run's metrics: counts, a chart against the threshold,
/// the latest measurements.
fn analysis(d: &Detail) -> Markup {
    let status = d.rollout.status.clone().unwrap_or_default();
    html! {
        @for run in &status.analysis_runs {
            section.analysis {
                h2 { "Analysis " (run.name) " " span.phase.(format!("{:?}", run.phase)) { (format!("{:?}", run.phase)) } }
                @if let Some(m) = &run.message { p { (m) } }
                @for m in &run.metrics {
                    @let conditions = conditions(&d.templates, &m.name);
                    @let limit = conditions.iter().find_map(|(_, c)| chart::threshold(c));
                    @let points = d.series.metrics.get(&(run.name.clone(), m.name.clone())).cloned().unwrap_or_default();
                    h3 { (m.name) " " small { (format!("{:?}", m.phase)) @if m.dry_run { " (dry run)" } } }
                    p.counts {
                        (m.count) " measured, " (m.successful) " successful, " (m.failed) " failed, "
                        (m.inconclusive) " inconclusive, " (m.error) " errors"
                        @for (kind, c) in &conditions { br; (kind) ": " code { (c) } }
                    }
                    figure.metric data-metric=(m.name) {
                        (PreEscaped(chart::measurements(&points, limit, d.now)))
                    }
                }
            }
        }
    }
}

/// A metric's conditions (`success`/`failure`, expression), from the
/// templates that define it.
fn conditions<'a>(
    templates: &[&'a AnalysisTemplate],
    metric: &str,
) -> Vec<(&'static str, &'a str)> {
    templates
        .iter()
        .flat_map(|t| &t.spec.metrics)
        .filter(|m| m.name == metric)
        .flat_map(|m| {
            let success = m.success_condition.as_deref().map(|c| ("success", c));
            let failure = m.failure_condition.as_deref().map(|c| ("failure", c));
            success.into_iter().chain(failure)
        })
        .collect()
}

fn replica_sets(sets: &[&ReplicaSet], status: &RolloutStatus) -> Markup {
    html! {
        @if !sets.is_empty() {
            section {
                h2 { "ReplicaSets" }
                table #replicasets {
                    thead { tr { th { "Name" } th { "Role" } th { "Desired" } th { "Ready" } th { "Available" } } }
                    tbody {
                        @for rs in sets {
                            @let s = rs.status.clone().unwrap_or_default();
                            tr {
                                td { (rs.metadata.name.as_deref().unwrap_or_default()) }
                                td { (role(rs, status)) }
                                td { (rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)) }
                                td { (s.ready_replicas.unwrap_or(0)) }
                                td { (s.available_replicas.unwrap_or(0)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The newest events first.
fn events(events: &[&Event], now: Timestamp) -> Markup {
    let mut events = events.to_vec();
    events.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
    html! {
        @if !events.is_empty() {
            section {
                h2 { "Events" }
                table #events {
                    @for e in events.iter().take(20) {
                        tr.(e.type_.as_deref().unwrap_or_default()) {
                            td { (event_time(e).map_or("–".into(), |t| ago(&t.to_string(), now))) }
                            td { (e.reason.as_deref().unwrap_or_default()) }
                            td { (e.note.as_deref().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

/// A Rollout that is not (or no longer) there.
pub fn missing(ns: &str, name: &str, issues: &[String]) -> Markup {
    html! {
        (problems(issues))
        p.empty { "Rollout " (ns) "/" (name) " is not in the cluster (the page updates when it is)." }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `shop/api` with its canary strategy and status given as YAML.
    fn shop_api(canary: &str, status: &str) -> Rollout {
        let spec = "{selector: {matchLabels: {app: api}}, strategy: {}, template: {metadata: {labels: {app: api}}, spec: {containers: [{name: api, image: 'api:2'}]}}}";
        let mut r: Rollout = serde_yaml::from_str(&format!(
            "{{apiVersion: gantry.dev/v1alpha1, kind: Rollout, metadata: {{name: api, namespace: shop}}, spec: {spec}}}"
        ))
        .unwrap();
        r.spec.strategy.canary = Some(serde_yaml::from_str(canary).unwrap());
        r.status = Some(serde_yaml::from_str(status).unwrap());
        r
    }

    fn page(r: &Rollout, replica_sets: Vec<&ReplicaSet>) -> String {
        rollout(&Detail {
            rollout: r,
            replica_sets,
            events: Vec::new(),
            templates: Vec::new(),
            series: Series::default(),
            problems: Vec::new(),
            now: "2026-01-01T00:10:00Z".parse().unwrap(),
        })
        .into_string()
    }

    #[test]
    fn the_page_says_which_service_is_stable_and_a_basic_canarys_pods() {
        let ping_pong = shop_api(
            "{pingPong: {pingService: api-ping, pongService: api-pong}, trafficRouting: {alb: {ingress: api, servicePort: 80, rootService: api}}, steps: [{setWeight: 20}]}",
            "{canary: {stablePingPong: ping}}",
        );
        let html = page(&ping_pong, Vec::new());
        assert!(
            html.contains("stable api-ping (ping), canary api-pong (pong)"),
            "{html}"
        );

        let routed = shop_api(
            "{canaryService: api-canary, stableService: api, trafficRouting: {managedRoutes: [{name: testers}], alb: {ingress: api, servicePort: 80}}, steps: [{setWeight: 20}, {setHeaderRoute: {name: testers, match: [{headerName: X-Canary, headerValue: {exact: 'yes'}}]}}, {pause: {}}]}",
            "{currentStepIndex: 2, canary: {headerRoutes: [testers]}}",
        );
        let html = page(&routed, Vec::new());
        assert!(
            html.contains("testers (X-Canary: yes) to the canary"),
            "{html}"
        );

        let basic = shop_api(
            "{steps: [{setWeight: 50}, {pause: {}}]}",
            "{stableRS: aaa, currentPodHash: bbb, phase: Paused}",
        );
        let rs: Vec<ReplicaSet> = ["aaa", "bbb"]
            .iter()
            .map(|hash| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("api-{hash}"), "labels": {"rollouts-pod-template-hash": hash}},
                    "spec": {"selector": {}, "replicas": 2},
                    "status": {"replicas": 2, "availableReplicas": 2}}))
                .unwrap()
            })
            .collect();
        let html = page(&basic, rs.iter().collect());
        assert!(
            html.contains("by pods (no traffic routing): canary 2 / stable 2 available"),
            "{html}"
        );
    }
}
