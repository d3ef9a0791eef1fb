//! Wiring: the controller, leader election and the HTTP endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::leader::Elector;
use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::types::{AnalysisTemplate, POD_TEMPLATE_HASH, Rollout};
use crate::validate::validate;

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
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let metrics = Metrics::default();
    let prometheus = crate::prometheus::Client::new()?;
    let mut ctx = Context::new(client.clone(), metrics.clone(), prometheus);
    let (elbv2, credentials) = crate::elbv2::Elbv2::from_env().await;
    ctx.verify_alb = settings.verify_alb.unwrap_or(credentials);
    ctx.elbv2 = Some(elbv2);
    tracing::info!(
        verify = ctx.verify_alb,
        aws_credentials = credentials,
        "ALB weight verification"
    );
    let ctx = Arc::new(ctx);
    let api = |c: &Client| match &settings.namespace {
        Some(ns) => (
            Api::<Rollout>::namespaced(c.clone(), ns),
            Api::<ReplicaSet>::namespaced(c.clone(), ns),
        ),
        None => (Api::all(c.clone()), Api::all(c.clone())),
    };
    let (rollouts, replica_sets) = api(&client);
    let (services, ingresses): (Api<Service>, Api<Ingress>) = match &settings.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };

    // Leadership: only the leader reconciles; on winning, reconcile everything.
    let (tx, mut rx) = watch::channel(false);
    let elector = Arc::new(Elector::new(
        client.clone(),
        &settings.lease_namespace,
        &settings.lease_name,
        &settings.identity,
    ));
    tokio::spawn(elector.run(tx));
    let (trigger_tx, trigger_rx) = futures::channel::mpsc::unbounded::<()>();
    let leader_ctx = ctx.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let leading = *rx.borrow();
            leader_ctx.leader.store(leading, Ordering::Relaxed);
            if leading {
                let _ = trigger_tx.unbounded_send(());
            }
        }
    });

    let controller = Controller::new(rollouts, watcher::Config::default());
    let store = controller.store();
    let ready = Arc::new(AtomicBool::new(false));
    let ready_flag = ready.clone();
    let ready_store = store.clone();
    tokio::spawn(async move {
        if ready_store.wait_until_ready().await.is_ok() {
            ready_flag.store(true, Ordering::Relaxed);
        }
    });
    let by_service = store.clone();
    let by_ingress = store.clone();
    let by_template = store.clone();
    let templates: Api<AnalysisTemplate> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(crate::server::serve(
        settings.listen,
        metrics,
        ready,
        wait_for(stop_rx),
    ));

    controller
        .owns(
            replica_sets,
            watcher::Config::default().labels(POD_TEMPLATE_HASH),
        )
        .watches(services, watcher::Config::default(), move |svc: Service| {
            referencing(&by_service, &svc.namespace().unwrap_or_default(), |plan| {
                plan.stable_service == svc.name_any() || plan.canary_service == svc.name_any()
            })
        })
        .watches(
            ingresses,
            watcher::Config::default(),
            move |ing: Ingress| {
                referencing(&by_ingress, &ing.namespace().unwrap_or_default(), |plan| {
                    plan.alb
                        .as_ref()
                        .is_some_and(|a| a.ingress == ing.name_any())
                })
            },
        )
        .watches(
            templates,
            watcher::Config::default(),
            move |t: AnalysisTemplate| {
                referencing(&by_template, &t.namespace().unwrap_or_default(), |plan| {
                    plan.analyses().any(|(_, _, a)| {
                        a.templates.iter().any(|r| r.template_name == t.name_any())
                    })
                })
            },
        )
        .reconcile_all_on(trigger_rx)
        .graceful_shutdown_on(shutdown_signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    server.await??;
    Ok(())
}

/// The Rollouts in `namespace` whose plan matches.
fn referencing(
    store: &Store<Rollout>,
    namespace: &str,
    matches: impl Fn(&crate::validate::Plan) -> bool,
) -> Vec<ObjectRef<Rollout>> {
    store
        .state()
        .iter()
        .filter(|r| r.namespace().as_deref() == Some(namespace))
        .filter(|r| validate(&r.spec).is_ok_and(|p| matches(&p)))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
