//! The kube glue: observe a Rollout's world, ask `decide`, carry out the
//! actions, write the status. Reads top-down; all judgement is in `decide`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::cache::{CachedIngress, CachedReplicaSet, CachedRollout, Caches};
use crate::elbv2::{Elbv2, IngressTarget};
use crate::events;
use crate::expectations::{Expectations, Kind, Ledger, conditional, versions};
use crate::jobs;
use crate::notifications::Notifier;
use crate::replica_sets::{
    STOPS_GRACEFULLY, move_pod_metadata, new_replica_set, recorded_metadata,
};
use crate::telemetry::Metrics;
use crate::watches::Watches;
use rollout_core::alb::routes::{RouteTarget, route_edit};
use rollout_core::alb::{self, ForwardWeights};
use rollout_core::analysis::{self, ArgContext, Provider};
use rollout_core::decide::{Action, decide, pending_restart};
use rollout_core::status_patch::status_patch;
use rollout_core::types::{AnalysisPhase, POD_TEMPLATE_HASH, Rollout, SecretKeyRef};
use rollout_core::validate::{Plan, plan_of};
use rollout_core::world::{IngressView, PodView, ReplicaSetView, ServiceView, Taken, World};

pub const FINALIZER: &str = "gantry.dev/rollout-cleanup";
/// When an old ReplicaSet is due to be scaled down (RFC 3339).
pub const SCALE_DOWN_AT: &str = "gantry.dev/scale-down-deadline";
/// On a Service: when the controller last pointed it at a ReplicaSet.
pub const SELECTED_AT: &str = "gantry.dev/selected-at";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("rollout has no namespace")]
    NoNamespace,
    #[error("{0}")]
    Aws(#[from] crate::elbv2::AwsError),
    #[error("cannot read a cached Rollout or Deployment back: {0}")]
    Cache(#[from] serde_json::Error),
}

pub struct Context {
    pub client: Client,
    /// The watch caches reconcile reads.
    pub caches: Caches,
    pub prometheus: rollout_metrics::Client,
    /// The ELBv2 API (direct mode, and verification when `verify_alb`).
    pub elbv2: Option<Elbv2>,
    pub verify_alb: bool,
    pub metrics: Metrics,
    /// Sends notifications (`None`: off).
    pub notifier: Option<Arc<Notifier>>,
    /// Only the leader writes; the others keep their caches warm.
    pub leader: AtomicBool,
    /// Whether the caches follow the cluster: nothing is decided while a
    /// watch is down.
    pub watches: Watches,
    /// Each Rollout's own writes the caches have not shown yet.
    pub expectations: Expectations,
}

impl Context {
    pub fn new(
        client: Client,
        caches: Caches,
        metrics: Metrics,
        prometheus: rollout_metrics::Client,
    ) -> Context {
        Context {
            client,
            caches,
            prometheus,
            elbv2: None,
            verify_alb: false,
            metrics,
            notifier: None,
            leader: AtomicBool::new(false),
            watches: Watches::default(),
            expectations: Expectations::default(),
        }
    }
}

pub async fn reconcile(
    cached: Arc<CachedRollout>,
    ctx: Arc<Context>,
) -> Result<Requeue, kube::runtime::finalizer::Error<Error>> {
    if !ctx.leader.load(Ordering::Relaxed) {
        return Ok(Requeue::await_change());
    }
    // Every Rollout is reconciled again once the watches are all up.
    if let Err(why) = ctx.watches.fresh() {
        tracing::debug!(rollout = %cached.name_any(), "not decided while {why}");
        return Ok(Requeue::await_change());
    }
    let ns = cached.namespace().unwrap_or_default();
    if let Some(unseen) = ctx
        .expectations
        .unseen((&ns, &cached.name_any()), &ctx.caches)
    {
        // The watch event that shows it wakes the Rollout; the requeue is
        // a backstop.
        tracing::debug!(rollout = %cached.name_any(), "not decided before the cache shows the last write: {unseen}");
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }
    let started = Instant::now();
    let rollout = cached
        .rollout()
        .map(Arc::new)
        .map_err(|e| kube::runtime::finalizer::Error::ApplyFailed(e.into()))?;
    let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, rollout, |event| async {
        match event {
            Finalizer::Apply(r) => apply(&r, &ctx).await,
            Finalizer::Cleanup(r) => cleanup(&r, &ctx).await,
        }
    })
    .await;
    ctx.metrics
        .observe_reconcile(started.elapsed(), result.is_err());
    result
}

pub fn error_policy(
    cached: Arc<CachedRollout>,
    error: &kube::runtime::finalizer::Error<Error>,
    _: Arc<Context>,
) -> Requeue {
    use kube::runtime::finalizer::Error::{AddFinalizer, ApplyFailed, CleanupFailed};
    let conflicted = match error {
        ApplyFailed(Error::Kube(e)) | CleanupFailed(Error::Kube(e)) | AddFinalizer(e) => {
            conflict(e)
        }
        _ => false,
    };
    if conflicted {
        // Changed since the cache was read: decided again once it shows
        // the change (its watch event wakes the Rollout sooner).
        tracing::info!(rollout = %cached.name_any(), %error, "write refused, the object changed: deciding again");
        return Requeue::requeue(Duration::from_secs(1));
    }
    tracing::warn!(%error, "reconcile failed");
    Requeue::requeue(Duration::from_secs(5))
}

/// A write refused because the object changed since it was read.
fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

async fn apply(rollout: &Rollout, ctx: &Context) -> Result<Requeue, Error> {
    let ns = rollout.namespace().ok_or(Error::NoNamespace)?;
    // The time that is the controller's own (caches and decision), apart
    // from the AWS, Prometheus and API calls around it.
    let observing = Instant::now();
    // Validated once for the glue; `decide` validates again and reports.
    let plan = plan_of(rollout).ok();
    let plan = plan.as_ref();
    let versions = versions(&ctx.caches, rollout, plan, &ns);
    let mut ledger = Ledger::new(
        &ctx.expectations,
        (ns.clone(), rollout.name_any()),
        versions,
    );
    let mut world = observe(rollout, plan, &ns, ctx).await?;
    let mut own = observing.elapsed();
    if let Some(plan) = plan {
        world.alb = observe_alb(rollout, plan, &ns, &world, ctx).await;
        world.measurements = measure(rollout, plan, &ns, &world, ctx).await?;
    }
    let deciding = Instant::now();
    let mut decision = decide(rollout, &world);
    own += deciding.elapsed();
    ctx.metrics.observe_decide(own);
    // Recorded in the status written below; sent once that write succeeded.
    let notices = match &ctx.notifier {
        Some(notifier) => notifier.due(rollout, plan, &mut decision.status),
        None => Vec::new(),
    };
    let name = rollout.name_any();
    for action in &decision.actions {
        // A replica that lost its lease mid-reconcile stops writing.
        if !ctx.leader.load(Ordering::Relaxed) {
            tracing::info!(rollout = %name, "no longer leading: the rest is left to the leader");
            return Ok(Requeue::await_change());
        }
        tracing::info!(rollout = %name, ?action, "acting");
        let done = execute(rollout, plan, &world, action, ctx, &mut ledger).await;
        if let (Err(Error::Kube(e)), Some((kind, target))) = (&done, written_object(action))
            && conflict(e)
        {
            ledger.conflicted(kind, target);
        }
        done?;
    }
    if let Some(patch) = status_patch(rollout.status.as_ref(), &decision.status) {
        let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = ledger.guard(Kind::Rollout, &name, patch);
        let written = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .inspect_err(|e| {
                if conflict(e) {
                    ledger.conflicted(Kind::Rollout, &name);
                }
            })?;
        ledger.wrote(
            Kind::Rollout,
            &name,
            written.metadata.resource_version.as_ref(),
        );
    }
    if let Some(notifier) = &ctx.notifier {
        notifier.send(notices);
    }
    for (reason, note) in decision.events {
        if let Err(e) = events::publish(&ctx.client, rollout, &reason, &note).await {
            tracing::warn!(error = %e, "cannot record event");
        }
    }
    ctx.metrics.record_rollout(rollout, &decision.status);
    Ok(match decision.requeue_after {
        Some(d) => Requeue::requeue(d),
        None => Requeue::await_change(),
    })
}

/// On delete: send all traffic to stable before the children go away.
async fn cleanup(rollout: &Rollout, ctx: &Context) -> Result<Requeue, Error> {
    let ns = rollout.namespace().ok_or(Error::NoNamespace)?;
    let plan = plan_of(rollout).ok();
    let alb_plan = plan.as_ref().and_then(|p| p.alb.as_ref());
    if let Some(direct) = alb_plan.and_then(|a| a.direct.as_ref()) {
        match &ctx.elbv2 {
            Some(aws) => aws.set_direct(direct, 0).await?,
            // Holding the delete forever would not bring the API back.
            None => tracing::warn!(
                rollout = %rollout.name_any(),
                "cannot reset the direct-mode weights: the ELBv2 API is not configured"
            ),
        }
    } else if let (Some(plan), Some(alb_plan)) = (&plan, alb_plan) {
        let weights = ForwardWeights::of(plan, alb_plan, 0);
        let target = RouteTarget::of(plan, alb_plan);
        for name in &alb_plan.ingresses {
            let Some(ingress) = ctx.caches.ingress(&ns, name) else {
                continue;
            };
            let mut view = ingress_view(&ingress);
            // The header routes go, then the weights go back to stable.
            let routes = route_edit(&view, &rollout.name_any(), alb_plan, &target, &[]);
            let (mut annotations, rules) = routes.map_or_else(Default::default, |e| {
                e.apply(&mut view);
                (e.annotations, e.rules)
            });
            annotations.extend(alb::annotations(
                &view.annotations,
                &rollout.name_any(),
                alb_plan,
                &weights,
            ));
            let patch = match rules {
                Some(rules) => json!({
                    "metadata": { "annotations": annotations },
                    "spec": { "rules": rules },
                }),
                None => json!({ "metadata": { "annotations": annotations } }),
            };
            let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ns);
            ingresses
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    ctx.metrics.forget_rollout(rollout);
    Ok(Requeue::await_change())
}

fn ingress_view(i: &CachedIngress) -> IngressView {
    IngressView {
        name: i.name_any(),
        rules: i.spec.rules.clone().unwrap_or_default(),
        hostname: i.hostname().cloned(),
        annotations: i.metadata.annotations.clone().unwrap_or_default(),
    }
}

/// The Rollout's world from the watch caches: the ReplicaSets it owns, its
/// Services, its Ingress and its AnalysisTemplates (`plan` is `None` for an
/// invalid spec). Only pods, while a restart is pending, are listed.
pub async fn observe(
    rollout: &Rollout,
    plan: Option<&Plan>,
    ns: &str,
    ctx: &Context,
) -> Result<World, Error> {
    let caches = &ctx.caches;
    let uid = rollout.uid().unwrap_or_default();
    let replica_sets = caches
        .owned_replica_sets(ns, &uid)
        .iter()
        .filter_map(|rs| replica_set_view(rs))
        .collect();
    let service = |name: Option<&String>| {
        let name = name.filter(|n| !n.is_empty())?;
        let cached = caches.service(ns, name)?;
        let mut endpoints = caches.endpoints.of(ns, name);
        for e in &mut endpoints {
            let pod = e.pod.as_deref().unwrap_or_default();
            e.health_gate = caches.health_gates.of(ns, name, pod);
        }
        Some(ServiceView {
            name: name.clone(),
            hash: cached.selected_hash().cloned(),
            selected_at: cached.annotation(SELECTED_AT).and_then(|t| t.parse().ok()),
            endpoints,
        })
    };
    let stable_service = service(plan.map(|p| &p.stable_service));
    let canary_service = service(plan.map(|p| &p.canary_service));
    // Direct mode has no Ingress.
    let ingresses = plan
        .and_then(|p| p.alb.as_ref())
        .into_iter()
        .flat_map(|alb| {
            alb.ingresses
                .iter()
                .filter_map(|name| Some(ingress_view(&*caches.ingress(ns, name)?)))
        })
        .collect();
    let workload = plan
        .and_then(|p| p.workload.as_ref())
        .and_then(|w| caches.deployment(ns, &w.deployment))
        .map(|d| d.view())
        .transpose()?;
    let pods = match plan {
        Some(p) if pending_restart(p.restart_at, rollout.status.as_ref()).is_some() => {
            let selector = match &workload {
                Some(w) if rollout.spec.selector == Default::default() => &w.selector,
                _ => &rollout.spec.selector,
            };
            list_pods(selector, ns, &ctx.client).await?
        }
        // Pods only matter while a restart is pending: no pod list otherwise.
        _ => Vec::new(),
    };
    let mut templates = BTreeMap::new();
    for (_, _, a) in plan.iter().flat_map(|p| p.analyses()) {
        for t in &a.templates {
            if let Some(found) = caches.template(ns, &t.template_name) {
                templates.insert(t.template_name.clone(), found.spec.clone());
            }
        }
    }
    Ok(World {
        now: k8s_openapi::jiff::Timestamp::now(),
        replica_sets,
        pods,
        stable_service,
        canary_service,
        ingresses,
        templates,
        measurements: Vec::new(),
        alb: None,
        workload,
    })
}

/// The pods of the Rollout's ReplicaSets, for a restart.
async fn list_pods(
    selector: &LabelSelector,
    ns: &str,
    client: &Client,
) -> Result<Vec<PodView>, Error> {
    let selector = rollout_core::hash::selector_string(selector).unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter_map(pod_view)
        .collect())
}

/// What the ELBv2 API shows for the Rollout's traffic split: always in
/// direct mode, in ingress mode when verification is on.
async fn observe_alb(
    rollout: &Rollout,
    plan: &Plan,
    ns: &str,
    world: &World,
    ctx: &Context,
) -> Option<Result<rollout_core::world::Observed, String>> {
    let alb = plan.alb.as_ref()?;
    let Some(aws) = &ctx.elbv2 else {
        return alb
            .direct
            .as_ref()
            .map(|_| Err("direct mode needs the ELBv2 API, which is not configured".into()));
    };
    let observed = match &alb.direct {
        Some(direct) => aws.observe_direct(direct).await,
        // Each Ingress's ALB, seen as one (`Observed::merge`).
        None if ctx.verify_alb => {
            let mut each = Vec::new();
            for ingress in &world.ingresses {
                let Some(hostname) = &ingress.hostname else {
                    return Some(Err(format!(
                        "Ingress {} has no load balancer hostname in its status yet",
                        ingress.name
                    )));
                };
                let target = IngressTarget {
                    hostname,
                    namespace: ns,
                    ingress: &ingress.name,
                    canary_service: &plan.canary_service,
                    stable_service: &plan.stable_service,
                    port: alb.service_port,
                };
                match aws.observe_ingress(&target).await {
                    Ok(observed) => each.push(observed),
                    Err(e) => return Some(Err(failed(rollout, e))),
                }
            }
            Ok(rollout_core::world::Observed::merge(each)?)
        }
        None => return None,
    };
    Some(observed.map_err(|e| failed(rollout, e)))
}

fn failed(rollout: &Rollout, e: impl std::fmt::Display) -> String {
    tracing::warn!(rollout = %rollout.name_any(), error = %e, "cannot read the ALB");
    e.to_string()
}

/// Takes the measurements due for the Rollout's running analyses, all at
/// once; each query and value is logged (secret arguments masked).
async fn measure(
    rollout: &Rollout,
    plan: &Plan,
    ns: &str,
    world: &World,
    ctx: &Context,
) -> Result<Vec<Taken>, Error> {
    let status = rollout.status.clone().unwrap_or_default();
    let Some(hash) = status.current_pod_hash.as_deref() else {
        return Ok(Vec::new());
    };
    let running: Vec<_> = status
        .analysis_runs
        .iter()
        .filter(|r| r.phase == AnalysisPhase::Running && r.pod_template_hash == hash)
        .collect();
    if running.is_empty() || status.abort {
        return Ok(Vec::new());
    }
    let secrets = read_secrets(world, ns, &ctx.client).await?;
    let args = ArgContext {
        rollout: Some(&rollout.metadata),
        stable_hash: status.stable_rs.as_deref(),
        latest_hash: Some(hash),
        secrets: Some(&secrets),
        alb: world.alb.as_ref().and_then(|a| a.as_ref().ok()),
    };
    // An invalid analysis is reported by `decide`; nothing to measure.
    let Ok(metrics) = analysis::resolve_plan(plan, &world.templates, &args) else {
        return Ok(Vec::new());
    };
    let due = running.iter().flat_map(|run| {
        let run_metrics = metrics
            .get(&run.name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        analysis::due(run, run_metrics, world.now)
            .into_iter()
            .map(move |m| (*run, m))
    });
    let name = rollout.name_any();
    let taken = futures::future::join_all(due.map(|(run, metric)| {
        let name = &name;
        async move {
            let measurement = match &metric.provider {
                // Creating a Job is a write: the leader's alone.
                Provider::Job(_) if !ctx.leader.load(Ordering::Relaxed) => return None,
                // Recorded once its Job finished.
                Provider::Job(job) => jobs::measure(&ctx.client, rollout, run, metric, job).await?,
                _ => rollout_metrics::measure(&ctx.prometheus, metric).await.0,
            };
            let run = run.name.clone();
            tracing::info!(
                rollout = %name,
                run = %run,
                metric = %metric.name,
                query = %metric.display_query,
                value = measurement.value.as_deref().unwrap_or("-"),
                phase = ?measurement.phase,
                message = measurement.message.as_deref().unwrap_or(""),
                "measured"
            );
            Some(Taken {
                run,
                pod_template_hash: hash.to_string(),
                metric: metric.name.clone(),
                measurement,
            })
        }
    }))
    .await;
    Ok(taken.into_iter().flatten().collect())
}

/// The Secret keys the templates' arguments read.
async fn read_secrets(
    world: &World,
    ns: &str,
    client: &Client,
) -> Result<BTreeMap<SecretKeyRef, String>, Error> {
    let refs: std::collections::BTreeSet<&SecretKeyRef> = world
        .templates
        .values()
        .flat_map(|t| &t.args)
        .filter_map(|a| a.value_from.as_ref()?.secret_key_ref.as_ref())
        .collect();
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut values = BTreeMap::new();
    for r in refs {
        let value = api
            .get_opt(&r.name)
            .await?
            .and_then(|s| s.data?.remove(&r.key))
            .and_then(|b| String::from_utf8(b.0).ok());
        if let Some(v) = value {
            values.insert(r.clone(), v);
        }
    }
    Ok(values)
}

fn replica_set_view(rs: &CachedReplicaSet) -> Option<ReplicaSetView> {
    let hash = rs.labels().get(POD_TEMPLATE_HASH)?.clone();
    Some(ReplicaSetView {
        name: rs.name_any(),
        hash,
        replicas: rs.spec.replicas.unwrap_or(1),
        ready: rs.status.ready_replicas.unwrap_or(0),
        available: rs.status.available_replicas.unwrap_or(0),
        scale_down_at: rs
            .annotations()
            .get(SCALE_DOWN_AT)
            .and_then(|t| t.parse().ok()),
        created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        pod_metadata: recorded_metadata(rs.annotations()),
        stops_gracefully: rs.annotations().contains_key(STOPS_GRACEFULLY),
    })
}

/// The cached object an action writes, if its write is conditional.
fn written_object(action: &Action) -> Option<(Kind, &str)> {
    match action {
        Action::ScaleReplicaSet { name, .. }
        | Action::ScheduleScaleDown { name, .. }
        | Action::DeleteReplicaSet { name }
        | Action::SetPodMetadata { name, .. } => Some((Kind::ReplicaSet, name)),
        Action::SetServiceSelector { service, .. } => Some((Kind::Service, service)),
        Action::SetIngressAction { ingress, .. } => Some((Kind::Ingress, ingress)),
        Action::ScaleDeployment { name, .. } => Some((Kind::Deployment, name)),
        Action::CreateReplicaSet { .. }
        | Action::EvictPod { .. }
        | Action::SetAlbWeights { .. } => None,
    }
}

/// Carries out one action; each write is conditional on the version the
/// decision saw, and remembered until the caches show it.
async fn execute(
    rollout: &Rollout,
    plan: Option<&Plan>,
    world: &World,
    action: &Action,
    ctx: &Context,
    ledger: &mut Ledger<'_>,
) -> Result<(), Error> {
    let client = &ctx.client;
    let ns = rollout.namespace().ok_or(Error::NoNamespace)?;
    let ns = ns.as_str();
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let params = PatchParams::default();
    let selector = world.selector(&rollout.spec);
    match action {
        Action::CreateReplicaSet {
            hash,
            replicas,
            pod_metadata,
            pre_stop,
        } => {
            let template = world
                .pod_template(&rollout.spec)
                .expect("decided with the pod template observed");
            let rs = new_replica_set(
                rollout,
                template,
                selector,
                hash,
                *replicas,
                pod_metadata,
                *pre_stop,
            );
            let name = rs.metadata.name.clone().unwrap_or_default();
            match replica_sets.create(&PostParams::default(), &rs).await {
                Err(kube::Error::Api(e)) if e.code == 409 => {} // created by an earlier attempt
                other => ledger.wrote(
                    Kind::ReplicaSet,
                    &name,
                    other?.metadata.resource_version.as_ref(),
                ),
            }
        }
        Action::ScaleReplicaSet { name, replicas } => {
            let patch = json!({ "spec": { "replicas": replicas } });
            let patch = ledger.guard(Kind::ReplicaSet, name, patch);
            let rs = replica_sets
                .patch(name, &params, &Patch::Merge(patch))
                .await?;
            ledger.wrote(
                Kind::ReplicaSet,
                name,
                rs.metadata.resource_version.as_ref(),
            );
        }
        Action::ScheduleScaleDown { name, at } => {
            let value = at.map(|t| t.to_string());
            let patch = json!({ "metadata": { "annotations": { SCALE_DOWN_AT: value } } });
            let patch = ledger.guard(Kind::ReplicaSet, name, patch);
            let rs = replica_sets
                .patch(name, &params, &Patch::Merge(patch))
                .await?;
            ledger.wrote(
                Kind::ReplicaSet,
                name,
                rs.metadata.resource_version.as_ref(),
            );
        }
        Action::DeleteReplicaSet { name } => {
            let mut params = DeleteParams::background();
            params.preconditions = ledger
                .version(Kind::ReplicaSet, name)
                .map(|v| Preconditions {
                    resource_version: Some(v.clone()),
                    uid: None,
                });
            replica_sets.delete(name, &params).await?;
            ledger.wrote(Kind::ReplicaSet, name, None);
        }
        Action::SetServiceSelector { service, hash, at } => {
            let services: Api<Service> = Api::namespaced(client.clone(), ns);
            let patch = json!({
                "metadata": { "annotations": { SELECTED_AT: at.to_string() } },
                "spec": { "selector": { POD_TEMPLATE_HASH: hash } }
            });
            let patch = ledger.guard(Kind::Service, service, patch);
            let written = services
                .patch(service, &params, &Patch::Merge(patch))
                .await?;
            ledger.wrote(
                Kind::Service,
                service,
                written.metadata.resource_version.as_ref(),
            );
        }
        Action::SetIngressAction {
            ingress,
            annotations,
            rules,
        } => {
            let ingresses: Api<Ingress> = Api::namespaced(client.clone(), ns);
            // Rules are a list a merge patch replaces whole: the ledger's
            // resourceVersion precondition keeps a concurrent edit from
            // being overwritten.
            let patch = match rules {
                Some(rules) => json!({
                    "metadata": { "annotations": annotations },
                    "spec": { "rules": rules },
                }),
                None => json!({ "metadata": { "annotations": annotations } }),
            };
            let patch = ledger.guard(Kind::Ingress, ingress, patch);
            let written = ingresses
                .patch(ingress, &params, &Patch::Merge(patch))
                .await?;
            ledger.wrote(
                Kind::Ingress,
                ingress,
                written.metadata.resource_version.as_ref(),
            );
        }
        Action::SetPodMetadata {
            name,
            hash,
            from,
            to,
        } => {
            let version = ledger.version(Kind::ReplicaSet, name);
            let replica_set = (name.as_str(), hash.as_str());
            let after = move_pod_metadata(
                client,
                rollout,
                selector,
                ns,
                replica_set,
                (from, to),
                version,
            )
            .await?;
            ledger.wrote(Kind::ReplicaSet, name, after.as_ref());
        }
        Action::ScaleDeployment { name, replicas } => {
            let version = ledger.version(Kind::Deployment, name);
            let after = scale_deployment(client, ns, name, *replicas, version).await?;
            ledger.wrote(Kind::Deployment, name, after.as_ref());
        }
        Action::EvictPod { name } => evict_pod(client, ns, name).await?,
        Action::SetAlbWeights { canary_weight } => {
            let direct = plan
                .and_then(|p| p.alb.as_ref()?.direct.as_ref())
                .expect("decided for a direct-mode plan");
            let aws = ctx
                .elbv2
                .as_ref()
                .expect("decided with the ELBv2 API observed");
            aws.set_direct(direct, *canary_weight).await?;
        }
    }
    Ok(())
}

/// Evicts a pod for a restart. Already gone, or refused by a
/// PodDisruptionBudget (429), is not an error: the next look decides again.
pub async fn evict_pod(client: &Client, ns: &str, name: &str) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match pods.evict(name, &EvictParams::default()).await {
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 429 => {
            tracing::info!(pod = %name, code = e.code, "eviction not done: {}", e.message);
            Ok(())
        }
        other => other.map(drop).map_err(Error::from),
    }
}

/// `workloadRef.scaleDown`: the Deployment's replicas, conditional on
/// `version` when given; its version after. A GitOps tool that syncs the
/// Deployment should ignore `spec.replicas` (Argo CD's ignoreDifferences),
/// as with Argo Rollouts.
pub async fn scale_deployment(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
    version: Option<&String>,
) -> Result<Option<String>, Error> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let patch = conditional(json!({ "spec": { "replicas": replicas } }), version);
    let written = deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(written.metadata.resource_version)
}

/// A pod of one of the Rollout's ReplicaSets, for restarts.
fn pod_view(pod: Pod) -> Option<PodView> {
    Some(PodView {
        hash: pod.labels().get(POD_TEMPLATE_HASH)?.clone(),
        created: pod.metadata.creation_timestamp.as_ref()?.0,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        name: pod.metadata.name?,
    })
}
