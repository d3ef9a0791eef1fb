//! The fake's objects: created, read, replaced, patched (merge and JSON
//! patch, status as a subresource), deleted (finalizers honoured), each
//! write numbered with a resourceVersion and logged for watches.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

/// `(collection, namespace, name)`; the collection is the API path prefix
/// and plural, e.g. `apis/apps/v1/replicasets`.
pub type Key = (String, String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

/// One write, as watches replay it.
pub struct Logged {
    pub rv: u64,
    pub key: Key,
    pub change: Change,
    /// The object as deleted (the others are read as they are now).
    pub deleted: Option<Value>,
}

/// Why a request was refused: HTTP status, message, the Status details.
pub type Refusal = (u16, String, Value);

/// A write conditional on a resourceVersion that was no longer the
/// object's: what the writer had seen, and what the object was at.
#[derive(Clone, Debug)]
pub struct Stale {
    pub key: Key,
    pub based_on: String,
    pub current: String,
}

#[derive(Default)]
pub struct Store {
    pub crds_installed: bool,
    /// Namespaces that exist; `None`: every namespace does.
    pub namespaces: Option<BTreeSet<String>>,
    /// Play kubelet: every ReplicaSet's pods are available at once.
    pub kubelet: bool,
    /// Record managedFields on every write, as the API server does (they
    /// are often the largest part of an object).
    pub managed_fields: bool,
    /// Pods get the LB controller's readiness gates (see `endpoints`).
    pub readiness_gates: bool,
    pub objects: BTreeMap<Key, Value>,
    pub log: Vec<Logged>,
    pub resource_version: u64,
    /// Every conditional write refused because the object had changed.
    pub stale: Vec<Stale>,
    /// How many writes were conditional on a resourceVersion.
    pub conditional: u64,
}

impl Store {
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    pub fn create(&mut self, key: Key, mut object: Value) -> Result<Value, Refusal> {
        if let Some(known) = &self.namespaces
            && !key.1.is_empty()
            && !known.contains(&key.1)
        {
            let details = json!({"name": key.1, "kind": "namespaces"});
            return Err((404, format!("namespaces \"{}\" not found", key.1), details));
        }
        if self.objects.contains_key(&key) {
            let message = format!("{} \"{}\" already exists", plural(&key), key.2);
            return Err((409, message, json!({})));
        }
        let meta = &mut object["metadata"];
        if !key.1.is_empty() {
            meta["namespace"] = json!(key.1);
        }
        meta["uid"] = json!(format!("uid-{}-{}", key.1, key.2));
        meta["generation"] = json!(1);
        if meta.get("creationTimestamp").is_none_or(Value::is_null) {
            meta["creationTimestamp"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
        }
        Ok(self.write(key, object, Change::Added))
    }

    /// PUT: refused when the body's resourceVersion is not the current one.
    pub fn replace(&mut self, key: Key, object: Value) -> Result<Value, Refusal> {
        if !self.objects.contains_key(&key) {
            return Err(not_found(&key));
        }
        let based_on = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        self.precondition(&key, based_on)?;
        Ok(self.write(key, object, Change::Modified))
    }

    /// PATCH with `content_type`'s semantics; `status` patches only the
    /// status, the object itself never changes its status.
    pub fn patch(
        &mut self,
        key: Key,
        status: bool,
        content_type: &str,
        patch: &Value,
    ) -> Result<Value, Refusal> {
        let Some(current) = self.objects.get(&key).cloned() else {
            return Err(not_found(&key));
        };
        if let Some(based_on) = patch["metadata"]["resourceVersion"].as_str() {
            self.precondition(&key, based_on)?;
        }
        let mut patched = current.clone();
        if content_type.starts_with("application/json-patch+json") {
            let mut ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| (400, e.to_string(), json!({})))?;
            // The API server's JSON patch finds a missing path equal to
            // null (kube's finalizer helper tests `/metadata/finalizers`
            // against null before adding the first one).
            ops.0.retain(|op| match op {
                json_patch::PatchOperation::Test(t) => {
                    !(t.value.is_null() && patched.pointer(t.path.as_str()).is_none())
                }
                _ => true,
            });
            json_patch::patch(&mut patched, &ops).map_err(|e| (422, e.to_string(), json!({})))?;
        } else if content_type.starts_with("application/merge-patch+json")
            || content_type.starts_with("application/strategic-merge-patch+json")
        {
            json_patch::merge(&mut patched, patch);
        } else {
            let message = format!("{content_type} is not supported by the fake");
            return Err((415, message, json!({})));
        }
        let object = if status {
            let mut kept = current.clone();
            kept["status"] = patched["status"].take();
            kept
        } else {
            patched["status"] = current["status"].clone();
            if patched.get("spec") != current.get("spec") {
                let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
                patched["metadata"]["generation"] = json!(generation + 1);
            }
            patched
        };
        if finalized(&object) {
            return Ok(self.remove(key));
        }
        Ok(self.write(key, object, Change::Modified))
    }

    /// The API server's optimistic concurrency: a write based on
    /// `based_on` is refused (409) when the object is at another version.
    fn precondition(&mut self, key: &Key, based_on: &str) -> Result<(), Refusal> {
        self.conditional += 1;
        let current = self.objects[key]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if based_on == current {
            return Ok(());
        }
        self.stale.push(Stale {
            key: key.clone(),
            based_on: based_on.to_string(),
            current,
        });
        let message = format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            plural(key),
            key.2
        );
        Err((409, message, json!({"name": key.2, "kind": plural(key)})))
    }

    /// DELETE, with the body's preconditions: an object with finalizers is
    /// only marked for deletion.
    pub fn delete(&mut self, key: Key, options: &Value) -> Result<Value, Refusal> {
        if !self.objects.contains_key(&key) {
            return Err(not_found(&key));
        }
        if let Some(based_on) = options["preconditions"]["resourceVersion"].as_str() {
            self.precondition(&key, based_on)?;
        }
        let current = self.objects[&key].clone();
        let finalizers = current["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if !finalizers {
            return Ok(self.remove(key));
        }
        let mut marked = current;
        marked["metadata"]["deletionTimestamp"] =
            json!(k8s_openapi::jiff::Timestamp::now().to_string());
        Ok(self.write(key, marked, Change::Modified))
    }

    pub(super) fn write(&mut self, key: Key, mut object: Value, change: Change) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        if self.kubelet && key.0.ends_with("/replicasets") {
            let ready = self.ready_pods(&key);
            run_pods(&mut object, ready);
        }
        if self.managed_fields {
            record_managed_fields(&mut object);
        }
        self.objects.insert(key.clone(), object.clone());
        self.log.push(Logged {
            rv: self.resource_version,
            key: key.clone(),
            change,
            deleted: None,
        });
        if self.kubelet {
            self.sync_slices(&key, &object);
        }
        object
    }

    pub(super) fn remove(&mut self, key: Key) -> Value {
        let object = self.objects.remove(&key).unwrap_or(Value::Null);
        self.resource_version += 1;
        self.log.push(Logged {
            rv: self.resource_version,
            key: key.clone(),
            change: Change::Deleted,
            deleted: Some(object.clone()),
        });
        if self.kubelet {
            self.sync_slices(&key, &object);
        }
        object
    }
}

/// What the ReplicaSet controller would report with `ready` of its pods
/// Ready (all of them, unless they wait for readiness gates).
fn run_pods(rs: &mut Value, ready: Option<i64>) {
    let replicas = rs["spec"]["replicas"].as_i64().unwrap_or(1);
    let ready = ready.unwrap_or(replicas).min(replicas);
    rs["status"] = json!({
        "replicas": replicas, "fullyLabeledReplicas": replicas, "readyReplicas": ready,
        "availableReplicas": ready, "observedGeneration": rs["metadata"]["generation"]
    });
}

/// One managedFields entry naming every field set, in the API server's
/// FieldsV1 shape (`f:<name>` keys, `{}` leaves).
fn record_managed_fields(object: &mut Value) {
    fn fields(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| k.as_str() != "managedFields")
                    .map(|(k, v)| (format!("f:{k}"), fields(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Object(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("i:{i}"), fields(v)))
                    .collect(),
            ),
            _ => json!({}),
        }
    }
    let entry = json!({"manager": "kubectl-client-side-apply", "operation": "Update",
                       "apiVersion": object["apiVersion"], "time": "2026-01-01T00:00:00Z",
                       "fieldsType": "FieldsV1", "fieldsV1": fields(object)});
    object["metadata"]["managedFields"] = json!([entry]);
}

/// Marked for deletion and no finalizer left.
fn finalized(object: &Value) -> bool {
    let meta = &object["metadata"];
    !meta["deletionTimestamp"].is_null() && meta["finalizers"].as_array().is_none_or(Vec::is_empty)
}

fn plural(key: &Key) -> &str {
    key.0.rsplit('/').next().unwrap_or_default()
}

pub fn not_found(key: &Key) -> Refusal {
    let message = format!("{} \"{}\" not found", plural(key), key.2);
    (404, message, json!({"name": key.2, "kind": plural(key)}))
}
