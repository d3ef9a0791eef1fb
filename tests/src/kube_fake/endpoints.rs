//! Playing the ReplicaSet controller, the kubelet and the EndpointSlice
//! controller, with `kubelet`: each ReplicaSet has `replicas` pods named
//! `<replicaset>-<i>`, Ready at once with an IP derived from the name, and
//! gone at once when scaled away; each Service has one slice listing the
//! pods it selects. Kept in step with every write of a ReplicaSet, a pod or
//! a Service; a slice is written only when its endpoints change. With
//! `readiness_gates`, the LB controller's webhook too: a new pod gets a
//! gate per TargetGroupBinding whose Service selects it, and is Ready only
//! once something (the LB controller's stand-in) sets it Ready; the
//! ReplicaSet counts only Ready pods then.

use serde_json::{Value, json};

use super::store::{Change, Key, Store};

const SERVICES: &str = "api/v1/services";
const PODS: &str = "api/v1/pods";
const REPLICA_SETS: &str = "apis/apps/v1/replicasets";
const SLICES: &str = "apis/discovery.k8s.io/v1/endpointslices";
const BINDINGS: &str = "apis/elbv2.k8s.aws/v1beta1/targetgroupbindings";
pub use crate::alb_sim::GATE_PREFIX;

impl Store {
    /// After `object` (at `key`) was written or deleted: its pods, and the
    /// slices of the Services it concerns.
    pub(super) fn sync_slices(&mut self, key: &Key, object: &Value) {
        let (collection, ns, name) = key;
        if collection == REPLICA_SETS {
            self.sync_pods(key, object);
            return;
        }
        let services: Vec<String> = if collection == SERVICES {
            vec![name.clone()]
        } else if collection == PODS {
            if self.readiness_gates {
                self.recount_ready(ns, object);
            }
            let labels = &object["metadata"]["labels"];
            self.in_namespace(SERVICES, ns)
                .filter(|(_, s)| selects(&s["spec"]["selector"], labels))
                .map(|(k, _)| k.2.clone())
                .collect()
        } else {
            return;
        };
        for service in services {
            self.sync_slice(ns, &service);
        }
    }

    /// The ReplicaSet's pods `0..replicas` exist (none once it is deleted).
    fn sync_pods(&mut self, key: &Key, rs: &Value) {
        let (_, ns, name) = key;
        let live = self.objects.contains_key(key);
        let replicas = if live {
            rs["spec"]["replicas"].as_i64().unwrap_or(1)
        } else {
            0
        };
        let prefix = format!("{name}-");
        let mine: Vec<Key> = self
            .in_namespace(PODS, ns)
            .filter(|(k, _)| {
                k.2.strip_prefix(&prefix)
                    .is_some_and(|i| i.parse::<i64>().is_ok())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in mine {
            let index: i64 = k.2[prefix.len()..].parse().unwrap_or(0);
            if index >= replicas {
                self.remove(k);
            }
        }
        for i in 0..replicas {
            let pod = format!("{name}-{i}");
            let pod_key = (PODS.to_string(), ns.clone(), pod.clone());
            if self.objects.contains_key(&pod_key) {
                continue;
            }
            let labels = rs["spec"]["template"]["metadata"]["labels"].clone();
            let gates = self.injected_gates(ns, &labels);
            // Ready at once, unless a readiness gate waits.
            let ready = if gates.is_empty() { "True" } else { "False" };
            let ip = pod_ip(&pod);
            let object = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": ns, "uid": format!("uid-{ns}-{pod}"),
                             "labels": labels,
                             "creationTimestamp": k8s_openapi::jiff::Timestamp::now().to_string(),
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                  "name": name, "uid": rs["metadata"]["uid"], "controller": true}]},
                "spec": {"containers": rs["spec"]["template"]["spec"]["containers"],
                         "readinessGates": gates},
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                           "conditions": [{"type": "ContainersReady", "status": "True"},
                                          {"type": "Ready", "status": ready}]}
            });
            self.write(pod_key, object, Change::Added);
        }
    }

    /// The LB controller's webhook: a gate for every TargetGroupBinding
    /// whose Service selects a pod with `labels`.
    fn injected_gates(&self, ns: &str, labels: &Value) -> Vec<Value> {
        if !self.readiness_gates {
            return Vec::new();
        }
        let bindings: Vec<(String, String)> = self
            .in_namespace(BINDINGS, ns)
            .filter_map(|(k, b)| {
                Some((
                    k.2.clone(),
                    b["spec"]["serviceRef"]["name"].as_str()?.to_string(),
                ))
            })
            .collect();
        bindings
            .into_iter()
            .filter(|(_, service)| {
                let key = (SERVICES.to_string(), ns.to_string(), service.clone());
                self.get(&key)
                    .is_some_and(|s| selects(&s["spec"]["selector"], labels))
            })
            .map(|(binding, _)| json!({"conditionType": format!("{GATE_PREFIX}{binding}")}))
            .collect()
    }

    /// How many of a ReplicaSet's pods are Ready (None: all, without gates).
    pub(super) fn ready_pods(&self, key: &Key) -> Option<i64> {
        if !self.readiness_gates {
            return None;
        }
        let prefix = format!("{}-", key.2);
        let ready = self
            .in_namespace(PODS, &key.1)
            .filter(|(k, _)| k.2.starts_with(&prefix))
            .filter(|(_, p)| is_ready(p))
            .count();
        Some(ready as i64)
    }

    /// A pod's readiness changed: its ReplicaSet's counts follow.
    fn recount_ready(&mut self, ns: &str, pod: &Value) {
        let Some(owner) = pod["metadata"]["ownerReferences"][0]["name"].as_str() else {
            return;
        };
        let key = (REPLICA_SETS.to_string(), ns.to_string(), owner.to_string());
        let Some(rs) = self.get(&key).cloned() else {
            return;
        };
        if self.ready_pods(&key) != rs["status"]["readyReplicas"].as_i64() {
            self.write(key, rs, Change::Modified);
        }
    }

    fn sync_slice(&mut self, ns: &str, service: &str) {
        let key = (
            SLICES.to_string(),
            ns.to_string(),
            format!("{service}-fake"),
        );
        let Some(selector) = self
            .get(&(SERVICES.to_string(), ns.to_string(), service.to_string()))
            .map(|s| s["spec"]["selector"].clone())
        else {
            if self.get(&key).is_some() {
                self.remove(key);
            }
            return;
        };
        let endpoints: Vec<Value> = self
            .in_namespace(PODS, ns)
            .filter(|(_, p)| selects(&selector, &p["metadata"]["labels"]))
            .map(|(k, p)| endpoint(&k.2, p))
            .collect();
        match self.get(&key) {
            Some(slice) if slice["endpoints"] == json!(endpoints) => {}
            Some(slice) => {
                let mut slice = slice.clone();
                slice["endpoints"] = json!(endpoints);
                self.write(key, slice, Change::Modified);
            }
            None => {
                let slice = json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": key.2, "namespace": ns, "uid": format!("uid-{ns}-{}", key.2),
                                 "labels": {"kubernetes.io/service-name": service}},
                    "addressType": "IPv4", "endpoints": endpoints, "ports": []
                });
                self.write(key, slice, Change::Added);
            }
        }
    }

    fn in_namespace<'a>(
        &'a self,
        collection: &str,
        ns: &str,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        let start = (collection.to_string(), ns.to_string(), String::new());
        let (collection, ns) = (collection.to_string(), ns.to_string());
        self.objects
            .range(start..)
            .take_while(move |(k, _)| k.0 == collection && k.1 == ns)
    }
}

/// Whether a Service's `selector` matches pods with `labels` (a Service
/// without a selector has no managed endpoints).
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .filter(|s| !s.is_empty())
        .is_some_and(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// A pod as its Services' slices list it: ready while its Ready condition
/// is True and it is not being deleted.
fn endpoint(name: &str, pod: &Value) -> Value {
    let ready = is_ready(pod) && pod["metadata"]["deletionTimestamp"].is_null();
    json!({"addresses": [pod["status"]["podIP"]],
           "conditions": {"ready": ready, "serving": ready, "terminating": !pod["metadata"]["deletionTimestamp"].is_null()},
           "targetRef": {"kind": "Pod", "name": name}})
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// An IP derived from a pod's name (no network plugin runs).
pub fn pod_ip(name: &str) -> String {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!(
        "10.{}.{}.{}",
        (h >> 16) & 0xff,
        (h >> 8) & 0xff,
        (h & 0xfd) + 1
    )
}
