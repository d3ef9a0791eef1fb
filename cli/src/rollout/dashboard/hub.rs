//! The dashboard's view of the cluster: one watch per kind (Rollouts, their
//! ReplicaSets, AnalysisTemplates, events about Rollouts) over the
//! dashboard's namespace (or all of them), shared by every browser tab.
//! Each change bumps a counter the pages' event streams wait on.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource, ResourceExt as _};
use rollout_core::types::{AnalysisTemplate, POD_TEMPLATE_HASH, Rollout};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::history::History;

pub struct Hub {
    pub client: kube::Client,
    /// The namespace shown; `None`: every namespace.
    pub namespace: Option<String>,
    pub rollouts: Store<Rollout>,
    pub replica_sets: Store<ReplicaSet>,
    pub templates: Store<AnalysisTemplate>,
    pub events: Store<Event>,
    pub history: Mutex<History>,
    /// Why a watch is failing now (e.g. RBAC), by kind; shown on every page.
    pub problems: Mutex<BTreeMap<&'static str, String>>,
    changed: watch::Sender<u64>,
}

impl Hub {
    /// Starts the watches; they run as long as the runtime does.
    pub fn start(client: kube::Client, namespace: Option<String>) -> Arc<Hub> {
        let (rollouts, rollouts_w) = reflector::store();
        let (replica_sets, replica_sets_w) = reflector::store();
        let (templates, templates_w) = reflector::store();
        let (events, events_w) = reflector::store();
        let hub = Arc::new(Hub {
            client: client.clone(),
            namespace: namespace.clone(),
            rollouts,
            replica_sets,
            templates,
            events,
            history: Mutex::new(History::default()),
            problems: Mutex::new(BTreeMap::new()),
            changed: watch::Sender::new(0),
        });
        let ns = namespace.as_deref();
        let all = watcher::Config::default();
        follow(
            &hub,
            "Rollouts",
            scoped(&client, ns),
            all.clone(),
            rollouts_w,
            Hub::observe,
        );
        let replica_sets = all.clone().labels(POD_TEMPLATE_HASH);
        follow(
            &hub,
            "ReplicaSets",
            scoped(&client, ns),
            replica_sets,
            replica_sets_w,
            ignore,
        );
        let templates = all.clone();
        follow(
            &hub,
            "AnalysisTemplates",
            scoped(&client, ns),
            templates,
            templates_w,
            ignore,
        );
        let events = all.fields("regarding.kind=Rollout");
        follow(
            &hub,
            "Events",
            scoped(&client, ns),
            events,
            events_w,
            ignore,
        );
        hub
    }

    /// A receiver that wakes at every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Whether `namespace` is one this dashboard shows.
    pub fn shows(&self, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
    }

    /// What is new in `rollout` goes into its history.
    fn observe(&self, event: &watcher::Event<Rollout>) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let now = jiff::Timestamp::now();
        match event {
            watcher::Event::Apply(r) | watcher::Event::InitApply(r) => history.observe(r, now),
            watcher::Event::Delete(r) => {
                history.forget(&r.namespace().unwrap_or_default(), &r.name_any());
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    fn problem(&self, kind: &'static str, problem: Option<String>) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        let changed = match problem {
            Some(p) => problems.insert(kind, p.clone()).as_ref() != Some(&p),
            None => problems.remove(kind).is_some(),
        };
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
    }
}

/// For the kinds that keep no history.
fn ignore<K>(_: &Hub, _: &watcher::Event<K>) {}

fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Keeps `writer`'s store in step with a watch of `api`; every change
/// (after the first full list) wakes the pages.
fn follow<K>(
    hub: &Arc<Hub>,
    kind: &'static str,
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    on_event: impl Fn(&Hub, &watcher::Event<K>) + Send + 'static,
) where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let hub = hub.clone();
    tokio::spawn(async move {
        let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    hub.problem(kind, None);
                    on_event(&hub, &event);
                    if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
                        hub.changed.send_modify(|n| *n += 1);
                    }
                }
                Err(e) => hub.problem(kind, Some(format!("cannot watch {kind}: {e}"))),
            }
        }
    });
}
