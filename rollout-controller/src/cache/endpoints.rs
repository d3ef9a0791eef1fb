//! The pods behind each Service, from its EndpointSlices: what the AWS Load
//! Balancer Controller registers in the Service's target group. Indexed by
//! Service, so a reconcile reads two Services' endpoints without scanning
//! every slice in scope; a relist is staged and swapped in whole, so no
//! reconcile sees a Service's endpoints half listed.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::watcher;
use serde::Deserialize;

use super::staged::Staged;
use super::{cached_resource, lean_meta};
use rollout_core::world::EndpointView;

/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// An EndpointSlice: its Service (label) and, per endpoint, the first
/// address, the ready condition and the pod.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedEndpointSlice {
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub endpoints: Vec<CachedEndpoint>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedEndpoint {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: Option<Conditions>,
    pub target_ref: Option<TargetRef>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Conditions {
    pub ready: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct TargetRef {
    pub name: Option<String>,
}

cached_resource!(CachedEndpointSlice, EndpointSlice);

impl CachedEndpointSlice {
    pub fn service(&self) -> Option<&String> {
        self.labels().get(SERVICE_NAME)
    }

    fn views(&self) -> Vec<EndpointView> {
        self.endpoints
            .iter()
            .filter_map(|e| {
                Some(EndpointView {
                    ip: e.addresses.first()?.clone(),
                    pod: e.target_ref.as_ref().and_then(|t| t.name.clone()),
                    // The API: an unknown (nil) ready condition reads as ready.
                    ready: e.conditions.as_ref().and_then(|c| c.ready) != Some(false),
                    // From the pods' readiness gates, where they carry any.
                    health_gate: None,
                })
            })
            .collect()
    }
}

pub fn trim_endpoint_slice(slice: &mut CachedEndpointSlice) {
    lean_meta(&mut slice.metadata);
    slice.metadata.annotations = None;
    if let Some(labels) = &mut slice.metadata.labels {
        labels.retain(|k, _| k == SERVICE_NAME);
    }
}

/// (namespace, Service) → slice name → its endpoints.
type Index = HashMap<(String, String), BTreeMap<String, Vec<EndpointView>>>;

/// The endpoints of every Service in scope, kept from the EndpointSlice watch.
#[derive(Clone, Default)]
pub struct Endpoints(Staged<Index>);

impl Endpoints {
    /// The endpoints of Service `name` in `ns` (none known: empty).
    pub fn of(&self, ns: &str, name: &str) -> Vec<EndpointView> {
        let index = self.0.read();
        index
            .get(&(ns.to_string(), name.to_string()))
            .map(|slices| slices.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    pub fn observe(&self, event: &watcher::Event<CachedEndpointSlice>) {
        self.0.observe(event, set, remove);
    }
}

fn key(slice: &CachedEndpointSlice) -> Option<(String, String)> {
    Some((slice.namespace()?, slice.service()?.clone()))
}

fn set(index: &mut Index, slice: &CachedEndpointSlice) {
    if let Some(k) = key(slice) {
        index
            .entry(k)
            .or_default()
            .insert(slice.name_any(), slice.views());
    }
}

fn remove(index: &mut Index, slice: &CachedEndpointSlice) {
    let Some(k) = key(slice) else {
        return;
    };
    if let Some(slices) = index.get_mut(&k) {
        slices.remove(&slice.name_any());
        if slices.is_empty() {
            index.remove(&k);
        }
    }
}

/// A `null` list reads as empty.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, service: &str, endpoints: serde_json::Value) -> CachedEndpointSlice {
        let mut s: CachedEndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop",
                         "labels": {SERVICE_NAME: service, "endpointslice.kubernetes.io/managed-by": "x"},
                         "managedFields": [{"manager": "kube-controller-manager"}]},
            "addressType": "IPv4",
            "ports": [{"port": 8080}],
            "endpoints": endpoints
        }))
        .unwrap();
        trim_endpoint_slice(&mut s);
        s
    }

    #[test]
    fn endpoints_by_service_with_readiness_and_pods() {
        let e = Endpoints::default();
        let a = slice(
            "web-a",
            "web",
            json!([
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": true},
                 "targetRef": {"kind": "Pod", "name": "web-abc-1", "namespace": "shop"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "terminating": true},
                 "targetRef": {"kind": "Pod", "name": "web-abc-2"}},
                {"addresses": ["10.0.0.3"]}
            ]),
        );
        assert_eq!(a.metadata.labels.as_ref().unwrap().len(), 1);
        assert!(a.metadata.managed_fields.is_none());
        e.observe(&watcher::Event::Apply(a));
        e.observe(&watcher::Event::Apply(slice("web-b", "web", json!(null))));
        e.observe(&watcher::Event::Apply(slice(
            "api-a",
            "api",
            json!([{"addresses": ["10.0.1.1"]}]),
        )));
        let web = e.of("shop", "web");
        let ready: Vec<(&str, bool)> = web.iter().map(|v| (v.ip.as_str(), v.ready)).collect();
        assert_eq!(
            ready,
            [("10.0.0.1", true), ("10.0.0.2", false), ("10.0.0.3", true)]
        );
        assert!(web[0].of("web-abc") && !web[0].of("web-ab"));
        assert_eq!(e.of("shop", "api").len(), 1);
        assert!(e.of("other", "web").is_empty());

        // A relist replaces everything only once it is complete.
        e.observe(&watcher::Event::Init);
        e.observe(&watcher::Event::InitApply(slice("api-a", "api", json!([]))));
        assert_eq!(e.of("shop", "web").len(), 3, "still the old list");
        e.observe(&watcher::Event::InitDone);
        assert!(e.of("shop", "web").is_empty() && e.of("shop", "api").is_empty());
        e.observe(&watcher::Event::Apply(slice(
            "web-a",
            "web",
            json!([{"addresses": ["10.0.0.9"]}]),
        )));
        e.observe(&watcher::Event::Delete(slice("web-a", "web", json!([]))));
        assert!(e.of("shop", "web").is_empty());
    }
}
