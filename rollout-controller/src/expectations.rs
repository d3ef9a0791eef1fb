//! What a decision was based on, and what the caches must show before the
//! next one.
//!
//! Every write is conditional on the resourceVersion the decision saw
//! (`metadata.resourceVersion` in the patch; a delete's precondition), so
//! a write from a stale cache is refused by the API server (`409`) instead
//! of undoing what someone else, or the controller itself, wrote since.
//! And after a reconcile wrote, its Rollout is not decided again until the
//! caches show every object it wrote changed (created: present; deleted:
//! gone): a decision from a cache that has not seen the controller's own
//! last write would repeat it, or move a weight back. This is
//! kube-controller-manager's "expectations", keyed by resourceVersion.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};

use crate::cache::Caches;
use rollout_core::types::Rollout;
use rollout_core::validate::Plan;

/// How long an unseen write holds its Rollout before it is given up on
/// (logged): a watch that is up delivers a write in milliseconds, and one
/// that is down holds every decision anyway.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Rollout,
    ReplicaSet,
    Service,
    Ingress,
    Deployment,
}

/// The resourceVersions of the objects a decision was made from.
#[derive(Clone, Debug, Default)]
pub struct Versions(BTreeMap<(Kind, String), String>);

impl Versions {
    pub fn saw(&mut self, kind: Kind, name: &str, version: Option<&String>) {
        if let Some(v) = version {
            self.0.insert((kind, name.to_string()), v.clone());
        }
    }

    pub fn of(&self, kind: Kind, name: &str) -> Option<&String> {
        self.0.get(&(kind, name.to_string()))
    }

    /// `patch` with the version seen as its precondition (unchanged when
    /// none was seen).
    pub fn guard(&self, kind: Kind, name: &str, patch: Value) -> Value {
        conditional(patch, self.of(kind, name))
    }
}

/// A merge `patch` the API server applies only to the object at `version`
/// (unchanged without one).
pub fn conditional(mut patch: Value, version: Option<&String>) -> Value {
    if let Some(v) = version {
        patch["metadata"]["resourceVersion"] = json!(v);
    }
    patch
}

/// The versions the caches hold now of what a decision about `rollout`
/// reads and may write. Taken before the world is observed: a change in
/// between makes the write conflict, never go through on older grounds.
pub fn versions(caches: &Caches, rollout: &Rollout, plan: Option<&Plan>, ns: &str) -> Versions {
    let mut versions = Versions::default();
    let name = rollout.meta().name.clone().unwrap_or_default();
    versions.saw(
        Kind::Rollout,
        &name,
        rollout.meta().resource_version.as_ref(),
    );
    let uid = rollout.meta().uid.clone().unwrap_or_default();
    for rs in caches.owned_replica_sets(ns, &uid) {
        let rs_name = rs.metadata.name.clone().unwrap_or_default();
        versions.saw(
            Kind::ReplicaSet,
            &rs_name,
            rs.metadata.resource_version.as_ref(),
        );
    }
    let Some(plan) = plan else { return versions };
    for service in plan.services() {
        if let Some(s) = caches.service(ns, service) {
            versions.saw(Kind::Service, service, s.metadata.resource_version.as_ref());
        }
    }
    for name in plan.alb.iter().flat_map(|a| &a.ingresses) {
        if let Some(i) = caches.ingress(ns, name) {
            versions.saw(Kind::Ingress, name, i.metadata.resource_version.as_ref());
        }
    }
    if let Some(w) = &plan.workload
        && let Some(d) = caches.deployment(ns, &w.deployment)
    {
        versions.saw(
            Kind::Deployment,
            &w.deployment,
            d.meta().resource_version.as_ref(),
        );
    }
    versions
}

/// One reconcile's writes: each conditional on the version its decision
/// saw, and remembered for the next decision.
pub struct Ledger<'a> {
    expectations: &'a Expectations,
    /// The Rollout's namespace and name.
    rollout: (String, String),
    versions: Versions,
}

impl<'a> Ledger<'a> {
    pub fn new(
        expectations: &'a Expectations,
        rollout: (String, String),
        versions: Versions,
    ) -> Self {
        Ledger {
            expectations,
            rollout,
            versions,
        }
    }

    /// See `Versions::guard`.
    pub fn guard(&self, kind: Kind, name: &str, patch: Value) -> Value {
        self.versions.guard(kind, name, patch)
    }

    pub fn version(&self, kind: Kind, name: &str) -> Option<&String> {
        self.versions.of(kind, name)
    }

    /// A write of `kind/name` was refused with a conflict (409): the cache
    /// is behind the object, and the next decision waits until it shows a
    /// version other than the one this write was based on.
    pub fn conflicted(&mut self, kind: Kind, name: &str) {
        if let Some(before) = self.versions.of(kind, name) {
            let (ns, rollout) = &self.rollout;
            self.expectations
                .wrote((ns, rollout), (kind, name), Some(before), None);
        }
    }

    /// `kind/name` was written and is now at `after` (`None`: deleted).
    pub fn wrote(&mut self, kind: Kind, name: &str, after: Option<&String>) {
        let (ns, rollout) = &self.rollout;
        let before = self.versions.of(kind, name);
        self.expectations
            .wrote((ns, rollout), (kind, name), before, after);
        self.versions.saw(kind, name, after);
    }
}

struct Expected {
    kind: Kind,
    name: String,
    /// The version the write replaced (`None`: it created the object).
    before: Option<String>,
    since: Instant,
}

/// Each Rollout's writes the caches have not shown yet.
#[derive(Default)]
pub struct Expectations(Mutex<HashMap<(String, String), Vec<Expected>>>);

impl Expectations {
    /// Records that a reconcile of Rollout `ns/rollout` wrote `kind/name`,
    /// which was at `before` (`None`: created) and is now at `after`; a
    /// write that changed nothing (same version) is not waited for.
    pub fn wrote(
        &self,
        (ns, rollout): (&str, &str),
        (kind, name): (Kind, &str),
        before: Option<&String>,
        after: Option<&String>,
    ) {
        if before.is_some() && before == after {
            return;
        }
        let mut all = self.0.lock().expect("expectations lock");
        all.entry((ns.to_string(), rollout.to_string()))
            .or_default()
            .push(Expected {
                kind,
                name: name.to_string(),
                before: before.cloned(),
                since: Instant::now(),
            });
    }

    /// The first write of the Rollout's last reconcile that the caches do
    /// not show yet, described; the ones shown (or given up on) are
    /// forgotten.
    pub fn unseen(&self, (ns, rollout): (&str, &str), caches: &Caches) -> Option<String> {
        let key = (ns.to_string(), rollout.to_string());
        let mut all = self.0.lock().expect("expectations lock");
        let pending = all.get_mut(&key)?;
        pending.retain(|e| {
            let cached = cached_version(caches, ns, e.kind, &e.name);
            if cached != e.before {
                return false;
            }
            if e.since.elapsed() > PATIENCE {
                tracing::warn!(
                    rollout, kind = ?e.kind, name = %e.name,
                    "own write not seen in the cache after {}s: deciding anyway", PATIENCE.as_secs()
                );
                return false;
            }
            true
        });
        let first = pending.first().map(|e| match &e.before {
            Some(v) => format!(
                "{:?} {} still at resourceVersion {v} in the cache",
                e.kind, e.name
            ),
            None => format!("{:?} {} not in the cache yet", e.kind, e.name),
        });
        if pending.is_empty() {
            all.remove(&key);
        }
        first
    }
}

fn cached_version(caches: &Caches, ns: &str, kind: Kind, name: &str) -> Option<String> {
    fn version<K>(store: &Store<K>, ns: &str, name: &str) -> Option<String>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let object = store.get(&ObjectRef::new(name).within(ns))?;
        object.meta().resource_version.clone()
    }
    match kind {
        Kind::Rollout => version(&caches.rollouts, ns, name),
        Kind::ReplicaSet => version(&caches.replica_sets, ns, name),
        Kind::Service => version(&caches.services, ns, name),
        Kind::Ingress => version(&caches.ingresses, ns, name),
        Kind::Deployment => version(&caches.deployments, ns, name),
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::*;
    use crate::cache::{self, CachedService};

    fn service(version: &str) -> CachedService {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": version},
            "spec": {"selector": {"app": "web"}}
        }))
        .unwrap()
    }

    const ROLLOUT: (&str, &str) = ("shop", "web");

    /// Caches holding Service `web` at 7.
    fn caches_with_service_at_7() -> (Caches, cache::Writers) {
        let (caches, mut writers) = cache::stores();
        writers
            .services
            .apply_watcher_event(&Event::Apply(service("7")));
        (caches, writers)
    }

    /// A reconcile of `shop/web` that decided from Service `web` at 7.
    fn ledger_seeing_service_at_7(expectations: &Expectations) -> Ledger<'_> {
        let mut versions = Versions::default();
        versions.saw(Kind::Service, "web", Some(&"7".to_string()));
        Ledger::new(expectations, ("shop".into(), "web".into()), versions)
    }

    #[test]
    fn a_decision_waits_until_the_cache_shows_each_write() {
        let (caches, mut writers) = caches_with_service_at_7();
        let expectations = Expectations::default();
        let mut ledger = ledger_seeing_service_at_7(&expectations);
        assert_eq!(
            ledger.guard(Kind::Service, "web", json!({"spec": {}})),
            json!({"spec": {}, "metadata": {"resourceVersion": "7"}})
        );
        ledger.wrote(Kind::Service, "web", Some(&"9".to_string()));
        // A write that changed nothing is not waited for.
        ledger.wrote(Kind::Service, "web", Some(&"9".to_string()));
        // Created: waited for until present.
        ledger.wrote(Kind::ReplicaSet, "web-1", Some(&"10".to_string()));

        let unseen = expectations.unseen(ROLLOUT, &caches);
        assert_eq!(
            unseen.as_deref(),
            Some("Service web still at resourceVersion 7 in the cache")
        );
        writers
            .services
            .apply_watcher_event(&Event::Apply(service("9")));
        let unseen = expectations.unseen(ROLLOUT, &caches);
        assert_eq!(
            unseen.as_deref(),
            Some("ReplicaSet web-1 not in the cache yet")
        );
        let rs =
            json!({"metadata": {"name": "web-1", "namespace": "shop", "resourceVersion": "10"}});
        let rs = serde_json::from_value(rs).unwrap();
        writers.replica_sets.apply_watcher_event(&Event::Apply(rs));
        assert_eq!(expectations.unseen(ROLLOUT, &caches), None);
        assert_eq!(expectations.unseen(("shop", "other"), &caches), None);
    }

    #[test]
    fn a_conflict_waits_for_a_newer_version_than_the_one_refused() {
        let (caches, mut writers) = caches_with_service_at_7();
        let expectations = Expectations::default();
        let mut ledger = ledger_seeing_service_at_7(&expectations);
        ledger.conflicted(Kind::Service, "web");
        assert!(expectations.unseen(ROLLOUT, &caches).is_some());
        writers
            .services
            .apply_watcher_event(&Event::Apply(service("8")));
        assert_eq!(expectations.unseen(ROLLOUT, &caches), None);
    }
}
