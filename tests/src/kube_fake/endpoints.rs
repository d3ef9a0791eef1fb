//! Playing the EndpointSlice controller, with `kubelet`: each Service has
//! one slice listing the pods of the ReplicaSets it selects, all ready,
//! named `<replicaset>-<i>` with an IP derived from the name. Kept in step
//! with every write of a ReplicaSet or a Service; a slice is written only
//! when its endpoints change.

use serde_json::{Value, json};

use super::store::{Change, Key, Store};

const SERVICES: &str = "api/v1/services";
const REPLICA_SETS: &str = "apis/apps/v1/replicasets";
const SLICES: &str = "apis/discovery.k8s.io/v1/endpointslices";

impl Store {
    /// After `object` (at `key`) was written or deleted: the slices of the
    /// Services it concerns.
    pub(super) fn sync_slices(&mut self, key: &Key, object: &Value) {
        let (collection, ns, name) = key;
        let services: Vec<String> = if collection == SERVICES {
            vec![name.clone()]
        } else if collection == REPLICA_SETS {
            let labels = &object["spec"]["template"]["metadata"]["labels"];
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
            .in_namespace(REPLICA_SETS, ns)
            .filter(|(_, rs)| selects(&selector, &rs["spec"]["template"]["metadata"]["labels"]))
            .flat_map(|(k, rs)| {
                let replicas = rs["spec"]["replicas"].as_i64().unwrap_or(1);
                (0..replicas).map(move |i| pod(&format!("{}-{i}", k.2)))
            })
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

/// A ready pod of the fake cluster, with an IP derived from its name.
fn pod(name: &str) -> Value {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let ip = format!(
        "10.{}.{}.{}",
        (h >> 16) & 0xff,
        (h >> 8) & 0xff,
        (h & 0xfd) + 1
    );
    json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false},
           "targetRef": {"kind": "Pod", "name": name}})
}
