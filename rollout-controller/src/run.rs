//! Wiring: the HTTP endpoints, the CRD check, leader election and the
//! controller. Startup errors are fatal at once; a stop signal ends the
//! process promptly whatever it is doing, and a leader hands its lease over
//! before it exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::stream::{self, BoxStream};
use futures::{StreamExt as _, TryStreamExt as _};
use kube::runtime::{Controller, WatchStreamExt as _, controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cache::{
    self, BINDING_GROUP, BINDING_PLURAL, BINDING_VERSION, CachedDeployment, CachedEndpointSlice,
    CachedIngress, CachedPod, CachedReplicaSet, CachedRollout, CachedService,
    CachedTargetGroupBinding, Writers,
};
use crate::client::Limits;
use crate::elbv2::Elbv2;
use crate::leader::Elector;
use crate::notifications::Notifier;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::references::{Kind, References};
use crate::server::Readiness;
use crate::telemetry::Metrics;
use crate::watches::Watches;
use rollout_core::types::{AnalysisTemplate, POD_TEMPLATE_HASH, Rollout};

/// How long in-flight reconciles may take after a stop signal before the
/// process exits anyway (well inside the kubelet's default 30 s grace).
const GRACE: Duration = Duration::from_secs(10);
/// The longest wait between two looks for missing CRDs.
const CRD_BACKOFF_MAX: Duration = Duration::from_secs(30);

pub struct Settings {
    /// Only watch this namespace (default: all).
    pub namespace: Option<String>,
    pub listen: SocketAddr,
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
    /// Check on AWS that the ALB applies the Ingress weights before a step
    /// counts as reached: `None` = when AWS credentials are available.
    pub verify_alb: Option<bool>,
    /// How many Rollouts are reconciled at once.
    pub concurrency: u16,
    /// The Kubernetes API client's request rate.
    pub api_limits: Limits,
    /// Where notification destinations are read from (`None`: off).
    pub notifications: Option<crate::notifications::Settings>,
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", settings.listen))?;
    let client = crate::client::rate_limited(settings.api_limits)
        .await
        .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let stop = CancellationToken::new();
    watch_signals(stop.clone())?;
    let metrics = Metrics::default();
    let readiness = Readiness::new("starting");
    let server = tokio::spawn(crate::server::serve(
        listener,
        metrics.clone(),
        readiness.clone(),
        stop.clone().cancelled_owned(),
    ));
    let work = manage(settings, client, metrics, readiness, stop.clone());
    let result = tokio::select! {
        result = work => result,
        _ = async { stop.cancelled().await; tokio::time::sleep(GRACE).await } => {
            tracing::warn!("still busy {}s after the stop signal: exiting anyway", GRACE.as_secs());
            Ok(())
        }
    };
    stop.cancel();
    // A scrape holding its connection open must not hold the exit.
    match tokio::time::timeout(Duration::from_secs(1), server).await {
        Ok(served) => served?.context("the metrics and health endpoints failed")?,
        Err(_) => tracing::debug!("HTTP connections still open at exit"),
    }
    tracing::info!("stopped");
    result
}

/// SIGTERM (what the kubelet sends) or Ctrl-C cancels `stop`. The handlers
/// are installed before anything slow starts, so no state ignores them.
fn watch_signals(stop: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stop signal received: shutting down");
        stop.cancel();
    });
    Ok(())
}

/// Everything between startup and shutdown, each phase ending early on `stop`.
async fn manage(
    mut settings: Settings,
    client: Client,
    metrics: Metrics,
    readiness: Readiness,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let prometheus = rollout_metrics::Client::new()?;
    let (caches, writers) = cache::stores();
    let mut ctx = Context::new(client.clone(), caches, metrics, prometheus);
    let elbv2 = Elbv2::from_env();
    ctx.verify_alb = tokio::select! {
        verify = alb_verification(settings.verify_alb, &elbv2) => verify,
        _ = stop.cancelled() => return Ok(()),
    };
    ctx.elbv2 = Some(elbv2);
    if let Some(notifications) = settings.notifications.take() {
        let metrics = ctx.metrics.clone();
        ctx.notifier = Some(Notifier::start(client.clone(), notifications, metrics).await?);
    }
    if !wait_for_crds(&client, &readiness, &stop).await {
        return Ok(());
    }
    let (trigger_tx, trigger_rx) = futures::channel::mpsc::unbounded::<()>();
    ctx.watches = Watches::reporting(readiness, ctx.metrics.clone(), trigger_tx.clone());
    let elector = Arc::new(Elector::new(
        client.clone(),
        &settings.lease_namespace,
        &settings.lease_name,
        &settings.identity,
    ));
    let (tx, rx) = watch::channel(false);
    let election = tokio::spawn(elector.clone().run(tx, stop.clone()));
    let ctx = Arc::new(ctx);
    let trigger = (trigger_tx, trigger_rx);
    control(&settings, client, ctx, writers, rx, trigger, stop).await;
    // Nothing reconciles any more: only now may another replica lead.
    let _ = election.await;
    if let Err(e) = elector.release().await {
        tracing::warn!(error = %e, "cannot release the leader lease");
    }
    Ok(())
}

/// Whether to verify the ALB weights on AWS, said in one line. `never`
/// asks AWS nothing.
async fn alb_verification(setting: Option<bool>, elbv2: &Elbv2) -> bool {
    let (verify, why) = match setting {
        Some(false) => (false, "--verify-alb-weights never"),
        Some(true) => (true, "--verify-alb-weights always"),
        None if elbv2.credentials_available().await => (true, "AWS credentials found"),
        None => (false, "no AWS credentials found"),
    };
    if verify {
        tracing::info!("{why}: ALB weights are verified on the ELBv2 API");
    } else {
        tracing::info!("{why}: ALB weight verification is off");
    }
    verify
}

/// Waits, with backoff, until the API server serves both custom resources;
/// `/readyz` names what is missing meanwhile. False when stopped first.
async fn wait_for_crds(client: &Client, readiness: &Readiness, stop: &CancellationToken) -> bool {
    let mut delay = Duration::from_secs(1);
    loop {
        let why = match missing_crds(client).await {
            Ok(missing) if missing.is_empty() => return true,
            Ok(missing) => format!(
                "CustomResourceDefinition {} not installed (kubectl apply --server-side -k manifests/controller)",
                missing.join(" and ")
            ),
            Err(e) => format!("cannot read the {} API group: {e}", rollout_core::GROUP),
        };
        tracing::error!(retry_in_s = delay.as_secs(), "{why}");
        readiness.not_ready(&why);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return false,
        }
        delay = (delay * 2).min(CRD_BACKOFF_MAX);
    }
}

/// The CRDs (`rollouts.gantry.dev`, …) the API server does not serve.
async fn missing_crds(client: &Client) -> Result<Vec<String>, kube::Error> {
    let group_version = format!("{}/{}", rollout_core::GROUP, rollout_core::VERSION);
    let served = match client.list_api_group_resources(&group_version).await {
        Ok(list) => list.resources.into_iter().map(|r| r.name).collect(),
        Err(kube::Error::Api(e)) if e.code == 404 => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok([Rollout::plural(&()), AnalysisTemplate::plural(&())]
        .into_iter()
        .filter(|plural| !served.iter().any(|s| s == plural))
        .map(|plural| format!("{plural}.{}", rollout_core::GROUP))
        .collect())
}

/// Sends on it reconcile every Rollout: on winning the lease, and when
/// every watch is up again after an outage.
type ReconcileAll = (UnboundedSender<()>, UnboundedReceiver<()>);

/// The controller itself, until `stop` (then in-flight reconciles finish).
/// Every kind it reads is watched into a trimmed cache; a change to a
/// child or a referenced object wakes the Rollouts it concerns.
async fn control(
    settings: &Settings,
    client: Client,
    ctx: Arc<Context>,
    writers: Writers,
    mut leading: watch::Receiver<bool>,
    (trigger_tx, trigger_rx): ReconcileAll,
    stop: CancellationToken,
) {
    let ns = settings.namespace.as_deref();
    let references = References::default();
    let watches = &ctx.watches;

    // Only the leader reconciles; on winning, reconcile everything.
    // Leading again after losing the lease: fresh caches first.
    let leader_ctx = ctx.clone();
    tokio::spawn(async move {
        let mut led = false;
        while leading.changed().await.is_ok() {
            let now_leading = *leading.borrow_and_update();
            if now_leading && led {
                tracing::info!("leading again: every watch lists anew before any decision");
                leader_ctx.watches.relist_all();
            }
            led |= now_leading;
            leader_ctx.leader.store(now_leading, Ordering::Relaxed);
            if now_leading {
                let _ = trigger_tx.unbounded_send(());
            }
        }
        leader_ctx.leader.store(false, Ordering::Relaxed);
    });

    let indexed = references.clone();
    let rollouts = watches
        .watch(
            "rollouts",
            scoped::<CachedRollout>(&client, ns),
            list_in_pages(),
        )
        .reflect(writers.rollouts)
        .inspect_ok(move |event| indexed.observe(event))
        .applied_objects();
    let store = ctx.caches.rollouts.clone();
    let replica_sets = watches
        .watch(
            "replicasets",
            scoped::<CachedReplicaSet>(&client, ns),
            list_in_pages().labels(POD_TEMPLATE_HASH),
        )
        .modify(cache::trim_replica_set)
        .reflect(writers.replica_sets)
        .touched_objects();
    let services = watches
        .watch(
            "services",
            scoped::<CachedService>(&client, ns),
            list_in_pages(),
        )
        .modify(cache::trim_service)
        .reflect(writers.services)
        .touched_objects();
    let ingresses = watches
        .watch(
            "ingresses",
            scoped::<CachedIngress>(&client, ns),
            list_in_pages(),
        )
        .modify(cache::trim_ingress)
        .reflect(writers.ingresses)
        .touched_objects();
    let templates = watches
        .watch(
            "analysistemplates",
            scoped::<AnalysisTemplate>(&client, ns),
            list_in_pages(),
        )
        .modify(cache::trim_template)
        .reflect(writers.templates)
        .touched_objects();

    let deployments = watches
        .watch(
            "deployments",
            scoped::<CachedDeployment>(&client, ns),
            list_in_pages(),
        )
        .reflect(writers.deployments)
        .touched_objects();
    let endpoints = ctx.caches.endpoints.clone();
    let endpoint_slices = watches
        .watch(
            "endpointslices",
            scoped::<CachedEndpointSlice>(&client, ns),
            list_in_pages().labels(cache::SERVICE_NAME),
        )
        .modify(cache::trim_endpoint_slice)
        .inspect_ok(move |event| endpoints.observe(event))
        .touched_objects();

    let (pods, bindings) = health_gate_watches(&client, ns, &ctx).await;

    let (by_service, by_ingress, by_template, by_deployment, by_slice) = (
        references.clone(),
        references.clone(),
        references.clone(),
        references.clone(),
        references.clone(),
    );
    let (by_pod, by_binding, gates) = (
        references.clone(),
        references,
        ctx.caches.health_gates.clone(),
    );
    Controller::for_stream(rollouts, store)
        .with_config(controller::Config::default().concurrency(settings.concurrency))
        .owns_stream(replica_sets)
        .watches_stream(services, move |s: CachedService| {
            by_service.of(
                Kind::Service,
                &s.namespace().unwrap_or_default(),
                &s.name_any(),
            )
        })
        .watches_stream(ingresses, move |i: CachedIngress| {
            by_ingress.of(
                Kind::Ingress,
                &i.namespace().unwrap_or_default(),
                &i.name_any(),
            )
        })
        .watches_stream(templates, move |t: AnalysisTemplate| {
            let ns = t.namespace().unwrap_or_default();
            by_template.of(Kind::AnalysisTemplate, &ns, &t.name_any())
        })
        .watches_stream(deployments, move |d: CachedDeployment| {
            let ns = d.namespace().unwrap_or_default();
            by_deployment.of(Kind::Deployment, &ns, &d.name_any())
        })
        // A Service's pods becoming ready or leaving: its Rollouts' gates.
        .watches_stream(endpoint_slices, move |s: CachedEndpointSlice| {
            let ns = s.namespace().unwrap_or_default();
            let service = s.service().cloned().unwrap_or_default();
            by_slice.of(Kind::Service, &ns, &service)
        })
        // A readiness gate passing, or a binding appearing: the Services'
        // Rollouts' gates.
        .watches_stream(pods, move |p: CachedPod| {
            let ns = p.namespace().unwrap_or_default();
            let services = gates.services_of(&p);
            let rollouts = services.iter().map(|s| by_pod.of(Kind::Service, &ns, s));
            rollouts.flatten().collect::<Vec<_>>()
        })
        .watches_stream(bindings, move |b: CachedTargetGroupBinding| {
            let ns = b.namespace().unwrap_or_default();
            by_binding.of(Kind::Service, &ns, b.service().unwrap_or_default())
        })
        .reconcile_all_on(trigger_rx)
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

type Touched<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// The watches behind the LB controller's readiness gates (the Rollouts'
/// pods and the TargetGroupBindings), filling `gates`; where the API
/// server does not serve TargetGroupBindings, no pod carries such a gate
/// and nothing is watched.
async fn health_gate_watches(
    client: &Client,
    ns: Option<&str>,
    ctx: &Context,
) -> (Touched<CachedPod>, Touched<CachedTargetGroupBinding>) {
    if !serves_target_group_bindings(client).await {
        return (stream::pending().boxed(), stream::pending().boxed());
    }
    let gates = &ctx.caches.health_gates;
    let (pod_gates, binding_gates) = (gates.clone(), gates.clone());
    let pods = ctx
        .watches
        .watch(
            "pods",
            scoped::<CachedPod>(client, ns),
            list_in_pages().labels(POD_TEMPLATE_HASH),
        )
        .inspect_ok(move |event| pod_gates.observe_pod(event))
        .touched_objects();
    let bindings = ctx
        .watches
        .watch(
            "targetgroupbindings",
            scoped::<CachedTargetGroupBinding>(client, ns),
            list_in_pages(),
        )
        .inspect_ok(move |event| binding_gates.observe_binding(event))
        .touched_objects();
    (pods.boxed(), bindings.boxed())
}

/// Whether the API server serves the AWS Load Balancer Controller's
/// TargetGroupBindings, said in one line.
async fn serves_target_group_bindings(client: &Client) -> bool {
    let group_version = format!("{BINDING_GROUP}/{BINDING_VERSION}");
    let served = match client.list_api_group_resources(&group_version).await {
        Ok(list) => list.resources.iter().any(|r| r.name == BINDING_PLURAL),
        Err(kube::Error::Api(e)) if e.code == 404 => false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the {group_version} API group: pod readiness gates are not read");
            return false;
        }
    };
    if served {
        tracing::info!(
            "TargetGroupBindings served: the LB controller's pod readiness gates are read"
        );
    } else {
        tracing::info!(
            "no TargetGroupBinding CRD (AWS Load Balancer Controller): pod readiness gates are not read"
        );
    }
    served
}

/// Initial lists in pages of 100: a page is held whole, untrimmed, while it
/// is read, and the allocator keeps that high-water mark; kube's default of
/// 500 full Rollouts costs ≈ 20 MiB for good.
fn list_in_pages() -> watcher::Config {
    watcher::Config::default().page_size(100)
}

/// `--namespace`'s objects of kind `K`, or all namespaces' without it.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
