//! The HTTP side: routes a request to discovery, a list (paginated), a
//! watch (replayed from the write log from the resourceVersion asked, then
//! live), or a write; every request is counted.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::faults::Faults;
use super::query::{Query, params};
use super::store::{Change, Key, Refusal, Store, not_found};

/// The server's state: the objects, and a signal for watches that the log grew.
pub struct Shared {
    pub store: Mutex<Store>,
    pub grew: watch::Sender<u64>,
    /// Every request: method and path with query.
    pub requests: Mutex<Vec<(Method, String)>>,
    /// Every write: method, path with query, body.
    pub writes: Mutex<Vec<(Method, String, Value)>>,
    /// When set, every PATCH is refused with 403 and this message (RBAC).
    pub forbid_patches: Mutex<Option<String>>,
    pub faults: Faults,
}

/// Where a request points: a collection, perhaps one object and a subresource.
#[derive(Clone)]
struct Target {
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    let query = uri.query().unwrap_or_default();
    shared
        .requests
        .lock()
        .unwrap()
        .push((method.clone(), uri.to_string()));
    let delay = shared.faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if method == Method::GET && path == "/apis/gantry.dev/v1alpha1" {
        return discovery(shared.store.lock().unwrap().crds_installed);
    }
    if method == Method::GET && path == "/apis/elbv2.k8s.aws/v1beta1" {
        return binding_discovery(shared.store.lock().unwrap().readiness_gates);
    }
    let Some(target) = target(path) else {
        return not_served();
    };
    let params = params(query);
    let is = |k: &str, v: &str| params.iter().any(|(pk, pv)| pk == k && pv == v);
    match (&method, &target.name) {
        (&Method::GET, None) if is("watch", "true") || is("watch", "1") => {
            let from = params
                .iter()
                .find(|(k, _)| k == "resourceVersion")
                .and_then(|(_, v)| v.parse().ok());
            if let Some(from) = from.filter(|v| shared.faults.gone(*v)) {
                return gone(from);
            }
            let query = Query::new(target.collection, target.namespace, &params);
            watch_stream(shared, query, from)
        }
        (&Method::GET, None) => {
            let query = Query::new(target.collection, target.namespace, &params);
            list(&shared.store.lock().unwrap(), &query, &params)
        }
        _ => {
            let content_type = headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json");
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if method != Method::GET {
                let write = (method.clone(), uri.to_string(), body.clone());
                shared.writes.lock().unwrap().push(write);
                if let Some((code, retry_after)) = shared.faults.take_refusal() {
                    return overloaded(code, retry_after);
                }
            }
            let forbidden = shared.forbid_patches.lock().unwrap().clone();
            if let Some(message) = forbidden.filter(|_| method == Method::PATCH) {
                return status((403, message, json!({})));
            }
            if let Some(patch) = shared.faults.take_interposed(path) {
                let second = Target { ..target.clone() };
                let second = write(
                    &shared,
                    &Method::PATCH,
                    second,
                    "application/merge-patch+json",
                    patch,
                );
                second.expect("the second writer's patch applies");
            }
            let result = write(&shared, &method, target, content_type, body);
            match result {
                Ok((code, object)) => reply(code, &object),
                Err(refusal) => status(refusal),
            }
        }
    }
}

fn target(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let (prefix, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => (format!("api/{version}"), rest),
        ["apis", group, version, rest @ ..] => (format!("apis/{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name.to_string()), None),
        [plural, name, sub] => (plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    Some(Target {
        collection: format!("{prefix}/{plural}"),
        namespace,
        name,
        subresource,
    })
}

/// A create, read, replace, patch or delete, and the answer's status code.
fn write(
    shared: &Shared,
    method: &Method,
    target: Target,
    content_type: &str,
    body: Value,
) -> Result<(u16, Value), Refusal> {
    let ns = target.namespace.unwrap_or_default();
    let mut store = shared.store.lock().unwrap();
    let key = |name: String| -> Key { (target.collection.clone(), ns.clone(), name) };
    let result = match (method, target.name) {
        (&Method::GET, Some(name)) => {
            let key = key(name);
            return store
                .get(&key)
                .map(|o| (200, o.clone()))
                .ok_or_else(|| not_found(&key));
        }
        (&Method::POST, None) => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            store.create(key(name), body).map(|o| (201, o))
        }
        (&Method::PUT, Some(name)) => store.replace(key(name), body).map(|o| (200, o)),
        (&Method::PATCH, Some(name)) => {
            let status = target.subresource.as_deref() == Some("status");
            store
                .patch(key(name), status, content_type, &body)
                .map(|o| (200, o))
        }
        (&Method::DELETE, Some(name)) => store.delete(key(name), &body).map(|o| (200, o)),
        // Subresources other than status (evictions) have nothing to act on.
        (&Method::POST, Some(name)) => {
            let key = key(name);
            return store
                .get(&key)
                .map(|_| (201, body))
                .ok_or_else(|| not_found(&key));
        }
        _ => Err((405, "not supported by the fake".into(), json!({}))),
    };
    shared.grew.send_replace(store.resource_version);
    result
}

fn list(store: &Store, query: &Query, params: &[(String, String)]) -> Response {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let limit = param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let start: usize = param("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut matching = store
        .objects
        .iter()
        .filter(|(key, object)| query.matches(key, object))
        .skip(start);
    let items: Vec<&Value> = matching.by_ref().take(limit).map(|(_, o)| o).collect();
    let more = matching.next().is_some();
    let mut metadata = json!({"resourceVersion": store.resource_version.to_string()});
    if more {
        metadata["continue"] = json!((start + items.len()).to_string());
    }
    reply(
        200,
        &json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": items}),
    )
}

/// The writes after `from` that the query matches, as watch events, then
/// every later one as it happens. The object sent is its state now: a
/// level-triggered client needs no more.
fn watch_stream(shared: Arc<Shared>, query: Query, from: Option<u64>) -> Response {
    let grew = shared.grew.subscribe();
    let ended = shared.faults.ended.subscribe();
    let cursor = {
        let store = shared.store.lock().unwrap();
        let from = from.unwrap_or(store.resource_version);
        store.log.partition_point(|entry| entry.rv <= from)
    };
    let state = (cursor, shared, (grew, ended), query);
    let events = futures::stream::unfold(state, |(mut cursor, shared, mut signals, query)| {
        async move {
            loop {
                let chunk = {
                    let store = shared.store.lock().unwrap();
                    let chunk = events_since(&store, cursor, &query);
                    cursor = store.log.len();
                    chunk
                };
                if !chunk.is_empty() {
                    let next = (cursor, shared, signals, query);
                    return Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), next));
                }
                let (grew, ended) = &mut signals;
                tokio::select! {
                    changed = grew.changed() => changed.ok()?,
                    // The server's watch timeout: the stream just ends.
                    _ = ended.changed() => return None,
                }
            }
        }
    });
    Body::from_stream(events).into_response()
}

/// Watch event lines for the log's entries from `cursor` on.
fn events_since(store: &Store, cursor: usize, query: &Query) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in &store.log[cursor..] {
        let object = match entry.change {
            Change::Deleted => entry.deleted.as_ref(),
            // Deleted since: its DELETED entry follows.
            _ => store.objects.get(&entry.key),
        };
        let Some(object) = object.filter(|o| query.matches(&entry.key, o)) else {
            continue;
        };
        let kind = match entry.change {
            Change::Added => "ADDED",
            Change::Modified => "MODIFIED",
            Change::Deleted => "DELETED",
        };
        serde_json::to_writer(&mut out, &json!({"type": kind, "object": object}))
            .expect("JSON serialises");
        out.push(b'\n');
    }
    out
}

/// A watch resumed from a resourceVersion compacted away: the API server
/// answers 200 and one ERROR event with `410 Gone`.
fn gone(from: u64) -> Response {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": format!("too old resource version: {from}"),
                        "reason": "Expired", "code": 410});
    let line = json!({"type": "ERROR", "object": status}).to_string() + "\n";
    reply_raw(200, line)
}

/// A write refused by an overloaded server: 429 (with `Retry-After`) or 503.
fn overloaded(code: u16, retry_after: Option<u32>) -> Response {
    let mut response = status((code, "the server is overloaded".into(), json!({})));
    if let Some(seconds) = retry_after {
        let value = axum::http::HeaderValue::from(seconds);
        response.headers_mut().insert("retry-after", value);
    }
    response
}

fn discovery(installed: bool) -> Response {
    if !installed {
        return not_served();
    }
    let resource = |name: &str, kind: &str| {
        json!({"name": name, "singularName": "", "namespaced": true, "kind": kind,
               "verbs": ["get", "list", "watch", "patch", "update"]})
    };
    reply(
        200,
        &json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "gantry.dev/v1alpha1",
            "resources": [resource("rollouts", "Rollout"), resource("rollouts/status", "Rollout"),
                          resource("analysistemplates", "AnalysisTemplate")]
        }),
    )
}

/// The AWS Load Balancer Controller's group, where its CRDs are installed.
fn binding_discovery(installed: bool) -> Response {
    if !installed {
        return not_served();
    }
    reply(
        200,
        &json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "elbv2.k8s.aws/v1beta1",
            "resources": [{"name": "targetgroupbindings", "singularName": "targetgroupbinding",
                           "namespaced": true, "kind": "TargetGroupBinding",
                           "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]}]
        }),
    )
}

fn not_served() -> Response {
    status((
        404,
        "the server could not find the requested resource".into(),
        json!({}),
    ))
}

fn status((code, message, details): Refusal) -> Response {
    let reason = match code {
        404 => "NotFound",
        403 => "Forbidden",
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        _ => "BadRequest",
    };
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "details": details, "code": code});
    reply(code, &body)
}

fn reply(code: u16, body: &Value) -> Response {
    reply_raw(code, body.to_string())
}

fn reply_raw(code: u16, body: String) -> Response {
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, json, body).into_response()
}
