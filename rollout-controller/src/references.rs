//! Which Rollouts name a Service, an Ingress, an AnalysisTemplate or a
//! Deployment, kept
//! from the Rollout watch: a change to one of those objects wakes exactly
//! its Rollouts, in constant time, instead of a scan (and a validation) of
//! every Rollout per event — which at 10,000 Rollouts would cost more than
//! the reconciles themselves.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::cache::CachedRollout;
use rollout_core::types::Rollout;
use rollout_core::validate::validate;

/// The kinds a Rollout refers to by name, in its own namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Service,
    Ingress,
    AnalysisTemplate,
    Deployment,
}

type Target = (Kind, String, String);

#[derive(Clone, Default)]
pub struct References(Arc<Mutex<Index>>);

#[derive(Default)]
struct Index {
    rollouts: HashMap<Target, HashSet<ObjectRef<CachedRollout>>>,
    targets: HashMap<ObjectRef<CachedRollout>, Vec<Target>>,
}

impl References {
    /// Follows the Rollout watch: a relist starts over, a change replaces
    /// the Rollout's references, a deletion drops them.
    pub fn observe(&self, event: &watcher::Event<CachedRollout>) {
        let mut index = self.0.lock().expect("references lock");
        match event {
            watcher::Event::Init => *index = Index::default(),
            watcher::Event::InitApply(r) | watcher::Event::Apply(r) => index.set(r),
            watcher::Event::Delete(r) => index.remove(&ObjectRef::from_obj(r)),
            watcher::Event::InitDone => {}
        }
    }

    /// The Rollouts in `namespace` that name `name` as a `kind`.
    pub fn of(&self, kind: Kind, namespace: &str, name: &str) -> Vec<ObjectRef<CachedRollout>> {
        let index = self.0.lock().expect("references lock");
        let target = (kind, namespace.to_string(), name.to_string());
        index
            .rollouts
            .get(&target)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Index {
    fn set(&mut self, cached: &CachedRollout) {
        let key = ObjectRef::from_obj(cached);
        self.remove(&key);
        let targets = cached.rollout().map(|r| targets(&r)).unwrap_or_default();
        for target in &targets {
            self.rollouts
                .entry(target.clone())
                .or_default()
                .insert(key.clone());
        }
        self.targets.insert(key, targets);
    }

    fn remove(&mut self, key: &ObjectRef<CachedRollout>) {
        for target in self.targets.remove(key).unwrap_or_default() {
            if let Some(set) = self.rollouts.get_mut(&target) {
                set.remove(key);
                if set.is_empty() {
                    self.rollouts.remove(&target);
                }
            }
        }
    }
}

/// What a valid Rollout names; an invalid one names nothing (it is
/// reconciled, and reported, when it changes itself).
fn targets(rollout: &Rollout) -> Vec<Target> {
    let Ok(plan) = validate(&rollout.spec) else {
        return Vec::new();
    };
    let ns = rollout.namespace().unwrap_or_default();
    let mut targets: Vec<Target> = plan
        .services()
        .map(|s| (Kind::Service, ns.clone(), s.to_string()))
        .collect();
    for name in plan.alb.iter().flat_map(|a| &a.ingresses) {
        targets.push((Kind::Ingress, ns.clone(), name.clone()));
    }
    if let Some(w) = &plan.workload {
        targets.push((Kind::Deployment, ns.clone(), w.deployment.clone()));
    }
    for (_, _, analysis) in plan.analyses() {
        for t in &analysis.templates {
            targets.push((Kind::AnalysisTemplate, ns.clone(), t.template_name.clone()));
        }
    }
    targets.sort();
    targets.dedup();
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(name: &str, stable: &str, ingress: &str) -> CachedRollout {
        serde_json::from_value(json!({
            "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                             "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "strategy": {"canary": {"stableService": stable, "canaryService": format!("{stable}-canary"),
                    "trafficRouting": {"alb": {"ingress": ingress, "servicePort": 80}},
                    "steps": [{"setWeight": 50}, {"pause": {}},
                              {"analysis": {"templates": [{"templateName": "errors"}]}}]}}}
        }))
        .unwrap()
    }

    fn names(refs: Vec<ObjectRef<CachedRollout>>) -> Vec<String> {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn follows_changes_deletions_and_relists() {
        let refs = References::default();
        refs.observe(&watcher::Event::Apply(rollout("a", "web", "shop")));
        refs.observe(&watcher::Event::Apply(rollout("b", "api", "shop")));
        assert_eq!(names(refs.of(Kind::Ingress, "shop", "shop")), ["a", "b"]);
        assert_eq!(names(refs.of(Kind::Service, "shop", "web-canary")), ["a"]);
        assert_eq!(
            names(refs.of(Kind::AnalysisTemplate, "shop", "errors")),
            ["a", "b"]
        );
        assert!(refs.of(Kind::Service, "other", "web").is_empty());

        // `a` now uses other Services: the old ones no longer wake it.
        refs.observe(&watcher::Event::Apply(rollout("a", "web2", "shop")));
        assert!(refs.of(Kind::Service, "shop", "web").is_empty());
        assert_eq!(names(refs.of(Kind::Service, "shop", "web2")), ["a"]);

        refs.observe(&watcher::Event::Delete(rollout("b", "api", "shop")));
        assert_eq!(names(refs.of(Kind::Ingress, "shop", "shop")), ["a"]);

        refs.observe(&watcher::Event::Init);
        assert!(refs.of(Kind::Ingress, "shop", "shop").is_empty());
        refs.observe(&watcher::Event::InitApply(rollout("b", "api", "shop")));
        assert_eq!(names(refs.of(Kind::Ingress, "shop", "shop")), ["b"]);
    }
}
