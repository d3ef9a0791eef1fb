//! Scenarios for the controller glue on the mock Kubernetes API
//! (`kube_mock`), shaped like kube-rs/controller-rs's `fixtures.rs`: chainable
//! test objects (`Rollout::test().deleting()`), and an `ApiServerVerifier`
//! that plays the API server through a named `Scenario`, asserting every
//! request's method and path in order and recording what the controller
//! sent. A test names the scenario, runs the glue, then reads `Sent`.
//!
//! The request sequences live here, once: when the glue's reads or writes
//! change, the scenario changes, not every test.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Method, Response};
use kube::client::Body;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use rollout_controller::cache::{self, CachedRollout, Caches};
use rollout_controller::reconcile::{Context, FINALIZER};
use rollout_controller::telemetry::Metrics;
use rollout_core::types::Rollout;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock::SendResponse;

use crate::kube_mock::{self, ApiHandle};

pub const NAMESPACE: &str = "shop";
const RS_CREATE: &str = "/apis/apps/v1/namespaces/shop/replicasets?";
const RS_AAA_PATCH: &str = "/apis/apps/v1/namespaces/shop/replicasets/backend-aaa?";
const INGRESS_PATCH: &str = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/shop?";
const STATUS_PATCH: &str = "/apis/gantry.dev/v1alpha1/namespaces/shop/rollouts/backend/status?";
const ROLLOUT_PATCH: &str = "/apis/gantry.dev/v1alpha1/namespaces/shop/rollouts/backend?";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events?";
const PODS: &str = "/api/v1/namespaces/shop/pods?&labelSelector=app%3Dbackend";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/gantry-system/leases/lock";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/gantry-system/leases?";
/// The ALB action annotation the example Rollout's weights go in.
pub const ACTION: &str = "alb.ingress.kubernetes.io/actions.backend-service";

/// What the API server will be asked, in order.
pub enum Scenario {
    /// A new Rollout behind an Ingress (read from the caches): the
    /// ReplicaSet created, the Ingress's weights set, the status written and
    /// an Event posted. Nothing is read.
    FirstReconcile(Rollout),
    /// A new Rollout in direct mode with no ELBv2 API: the same without the
    /// Ingress; the status says why the weights cannot be verified.
    FirstReconcileDirectWithoutElbv2(Rollout),
    /// A deleted Rollout behind an Ingress: the weights go back to stable
    /// on the Ingress, then the finalizer is removed.
    Cleanup,
    /// A deleted direct-mode Rollout without the ELBv2 API: only the
    /// finalizer is removed.
    CleanupWithoutIngress,
    /// A restart is pending: the observation lists the pods (one of them
    /// terminating; pods are not cached) and an eviction is refused by a
    /// PodDisruptionBudget.
    RestartEvictionRefused,
    /// A ReplicaSet moves from canary to stable role metadata: its
    /// template, then each pod it runs (one of them gone meanwhile).
    RoleMetadataMoved,
    /// A `workloadRef` Rollout's first reconcile: the ReplicaSet created
    /// from the Deployment's template (read from the cache), weights,
    /// status, Event; then the Deployment scaled down.
    WorkloadFirstReconcile(Rollout),
    /// Four lease acquisitions: none exists (created), held fresh by
    /// another replica (kept out), held but expired (taken over), taken
    /// over by another replica first (409).
    LeaseContests,
}

/// One request the controller sent: method, path with query, JSON body.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

/// Every request of a scenario, in order.
#[derive(Debug, Default)]
pub struct Sent(pub Vec<Call>);

impl Sent {
    /// The body of the only request with this method and exact path.
    pub fn body(&self, method: Method, path: &str) -> &Value {
        let mut found = self
            .0
            .iter()
            .filter(|c| c.method == method && c.path == path);
        let call = found
            .next()
            .unwrap_or_else(|| panic!("no {method} {path} in {:#?}", self.0));
        assert!(found.next().is_none(), "several {method} {path}");
        &call.body
    }

    /// The bodies of every request with this method and exact path.
    pub fn bodies(&self, method: Method, path: &str) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|c| c.method == method && c.path == path)
            .map(|c| &c.body)
            .collect()
    }

    pub fn replica_set(&self) -> &Value {
        self.body(Method::POST, RS_CREATE)
    }

    pub fn ingress_patch(&self) -> &Value {
        self.body(Method::PATCH, INGRESS_PATCH)
    }

    pub fn status_patch(&self) -> &Value {
        self.body(Method::PATCH, STATUS_PATCH)
    }

    pub fn event(&self) -> &Value {
        self.body(Method::POST, EVENTS)
    }

    pub fn rollout_patch(&self) -> &Value {
        self.body(Method::PATCH, ROLLOUT_PATCH)
    }

    /// The bodies written to the lease (created or replaced), in order.
    pub fn lease_writes(&self) -> Vec<&Value> {
        let put = format!("{LEASE}?");
        self.0
            .iter()
            .filter(|c| {
                (c.method == Method::POST && c.path == LEASES)
                    || (c.method == Method::PUT && c.path == put)
            })
            .map(|c| &c.body)
            .collect()
    }

    /// Every request that is not a GET or a list.
    pub fn writes(&self) -> Vec<&Call> {
        self.0.iter().filter(|c| c.method != Method::GET).collect()
    }
}

/// A client whose requests arrive at the verifier.
pub fn mock_api() -> (kube::Client, ApiServerVerifier) {
    let (client, handle) = kube_mock::client();
    let verifier = ApiServerVerifier {
        handle,
        sent: Sent::default(),
    };
    (client, verifier)
}

/// The reconciler's context on a mock API, its watch caches holding
/// `cached`; `leader` decides whether it may write.
pub fn test_context(leader: bool, cached: Cached) -> (Arc<Context>, ApiServerVerifier) {
    let (client, verifier) = mock_api();
    let ctx = Context::new(
        client,
        cached.into_caches(),
        Metrics::default(),
        rollout_metrics::Client::new().expect("an HTTP client"),
    );
    ctx.leader.store(leader, Ordering::Relaxed);
    (Arc::new(ctx), verifier)
}

/// What the watch caches hold when a scenario starts (trimmed as the
/// controller trims them).
pub struct Cached {
    objects: Vec<Value>,
}

impl Cached {
    /// Both Services of the test Rollout, and its Ingress without weights.
    pub fn standard() -> Cached {
        Cached {
            objects: vec![
                service("backend-service"),
                service("backend-service-canary"),
                ingress_with(json!({})),
            ],
        }
    }

    /// The Ingress carries these annotations.
    pub fn ingress_annotations(mut self, annotations: Value) -> Cached {
        self.objects.retain(|o| o["kind"] != "Ingress");
        self.objects.push(ingress_with(annotations));
        self
    }

    /// Caches filled from these objects (each by its `kind`).
    pub fn of(objects: Vec<Value>) -> Cached {
        Cached { objects }
    }

    pub fn into_caches(self) -> Caches {
        let (caches, mut writers) = cache::stores();
        for object in self.objects {
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            match kind.as_str() {
                // Kept compact as it is read: nothing to trim.
                "Rollout" => apply(&mut writers.rollouts, object, |_| {}),
                "ReplicaSet" => apply(&mut writers.replica_sets, object, cache::trim_replica_set),
                "Service" => apply(&mut writers.services, object, cache::trim_service),
                "Ingress" => apply(&mut writers.ingresses, object, cache::trim_ingress),
                "AnalysisTemplate" => apply(&mut writers.templates, object, cache::trim_template),
                "Deployment" => apply(&mut writers.deployments, object, |_| {}),
                "EndpointSlice" => {
                    let mut slice: cache::CachedEndpointSlice =
                        serde_json::from_value(object).expect("a valid EndpointSlice");
                    cache::trim_endpoint_slice(&mut slice);
                    caches.endpoints.observe(&watcher::Event::Apply(slice));
                }
                other => panic!("no cache for kind {other:?}"),
            }
        }
        caches
    }
}

/// Puts `object`, trimmed, into the store `writer` fills.
fn apply<K>(writer: &mut Writer<K>, object: Value, trim: fn(&mut K))
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned,
{
    let mut object: K = serde_json::from_value(object).expect("a valid object");
    trim(&mut object);
    writer.apply_watcher_event(&watcher::Event::Apply(object));
}

/// Waits for a scenario to finish; a glue that stops early (or waits for
/// an answer that never comes) fails here instead of hanging.
pub async fn timeout_after_1s(server: JoinHandle<Sent>) -> Sent {
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .expect("the scenario finished within a second")
        .expect("the scenario's assertions held")
}

pub struct ApiServerVerifier {
    handle: ApiHandle,
    sent: Sent,
}

impl ApiServerVerifier {
    /// Plays `scenario` on a task; its result is everything sent.
    pub fn run(self, scenario: Scenario) -> JoinHandle<Sent> {
        tokio::spawn(async move {
            match scenario {
                Scenario::FirstReconcile(rollout) => self.first_reconcile(rollout, true).await,
                Scenario::FirstReconcileDirectWithoutElbv2(rollout) => {
                    self.first_reconcile(rollout, false).await
                }
                Scenario::Cleanup => self.cleanup().await,
                Scenario::CleanupWithoutIngress => self.finalizer_removed().await,
                Scenario::RestartEvictionRefused => self.restart_eviction_refused().await,
                Scenario::RoleMetadataMoved => self.role_metadata_moved().await,
                Scenario::WorkloadFirstReconcile(rollout) => {
                    self.workload_first_reconcile(rollout).await
                }
                Scenario::LeaseContests => self.lease_contests().await,
            }
            .sent
        })
    }

    /// Nothing arrives within 50 ms (a follower, a settled Rollout).
    pub async fn assert_silent(mut self) {
        let next = tokio::time::timeout(Duration::from_millis(50), self.handle.next_request());
        match next.await {
            Err(_) | Ok(None) => {}
            Ok(Some((request, _))) => {
                panic!("unexpected {} {}", request.method(), request.uri())
            }
        }
    }

    async fn first_reconcile(mut self, rollout: Rollout, ingress: bool) -> Self {
        self.echo(Method::POST, RS_CREATE, 201).await;
        if ingress {
            self.answer(Method::PATCH, INGRESS_PATCH, 200, ingress_with(json!({})))
                .await;
        }
        let answer = serde_json::to_value(rollout).unwrap();
        self.answer(Method::PATCH, STATUS_PATCH, 200, answer).await;
        self.echo(Method::POST, EVENTS, 201).await;
        self
    }

    async fn cleanup(mut self) -> Self {
        self.answer(Method::PATCH, INGRESS_PATCH, 200, ingress_with(json!({})))
            .await;
        self.finalizer_removed().await
    }

    async fn finalizer_removed(mut self) -> Self {
        let rollout = serde_json::to_value(Rollout::test()).unwrap();
        self.answer(Method::PATCH, ROLLOUT_PATCH, 200, rollout)
            .await;
        self
    }

    async fn restart_eviction_refused(mut self) -> Self {
        let pod = |name: &str, deleting: Option<&str>| {
            json!({"metadata": {"name": name, "creationTimestamp": "2025-12-31T00:00:00Z",
                                "deletionTimestamp": deleting,
                                "labels": {"app": "backend", "rollouts-pod-template-hash": "aaa"}}})
        };
        let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            pod("backend-aaa-1", None), pod("backend-aaa-2", Some("2026-01-01T00:00:01Z"))]});
        self.answer(Method::GET, PODS, 200, pods).await;
        let refused = status_error(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        );
        let path = "/api/v1/namespaces/shop/pods/backend-aaa-1/eviction?";
        self.answer(Method::POST, path, 429, refused).await;
        self
    }

    async fn role_metadata_moved(mut self) -> Self {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "metadata": {"name": "backend-aaa", "namespace": NAMESPACE}});
        self.answer(Method::PATCH, RS_AAA_PATCH, 200, rs).await;
        let pod = |name: &str| json!({"metadata": {"name": name, "labels": {"app": "backend", "rollouts-pod-template-hash": "aaa"}}});
        let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                          "items": [pod("backend-aaa-1"), pod("backend-aaa-2")]});
        let listed = "/api/v1/namespaces/shop/pods?&labelSelector=app%3Dbackend%2Crollouts-pod-template-hash%3Daaa";
        self.answer(Method::GET, listed, 200, pods).await;
        self.answer(
            Method::PATCH,
            "/api/v1/namespaces/shop/pods/backend-aaa-1?",
            200,
            pod("backend-aaa-1"),
        )
        .await;
        let gone = status_error(404, "NotFound", "pods \"backend-aaa-2\" not found");
        self.answer(
            Method::PATCH,
            "/api/v1/namespaces/shop/pods/backend-aaa-2?",
            404,
            gone,
        )
        .await;
        self
    }

    async fn workload_first_reconcile(mut self, rollout: Rollout) -> Self {
        self.echo(Method::POST, RS_CREATE, 201).await;
        self.answer(Method::PATCH, INGRESS_PATCH, 200, ingress_with(json!({})))
            .await;
        let answer = serde_json::to_value(rollout).unwrap();
        self.answer(Method::PATCH, STATUS_PATCH, 200, answer).await;
        self.echo(Method::POST, EVENTS, 201).await;
        self.answer(
            Method::PATCH,
            "/apis/apps/v1/namespaces/shop/deployments/backend?",
            200,
            deployment(),
        )
        .await;
        self
    }

    async fn lease_contests(mut self) -> Self {
        let put = format!("{LEASE}?");
        let fresh = lease("other", "2026-01-01T00:00:50.000000Z");
        let expired = lease("other", "2026-01-01T00:00:30.000000Z");
        let not_found = status_error(404, "NotFound", "not found");
        let conflict = status_error(409, "Conflict", "conflict");
        self.answer(Method::GET, LEASE, 404, not_found).await;
        self.echo(Method::POST, LEASES, 201).await;
        self.answer(Method::GET, LEASE, 200, fresh).await;
        self.answer(Method::GET, LEASE, 200, expired.clone()).await;
        self.echo(Method::PUT, &put, 200).await;
        self.answer(Method::GET, LEASE, 200, expired).await;
        self.answer(Method::PUT, &put, 409, conflict).await;
        self
    }

    /// Answers the next request, which must be `method path`, with
    /// `status` and `body`.
    async fn answer(&mut self, method: Method, path: &str, status: u16, body: Value) {
        let send = self.next(method, path).await;
        kube_mock::respond(send, status, body);
    }

    /// Like `answer`, echoing the request's body (a create or replace).
    async fn echo(&mut self, method: Method, path: &str, status: u16) {
        let send = self.next(method, path).await;
        let body = self.sent.0.last().expect("just recorded").body.clone();
        kube_mock::respond(send, status, body);
    }

    /// Takes the next request, checks its method and path, records it.
    async fn next(&mut self, method: Method, path: &str) -> SendResponse<Response<Body>> {
        let (body, send) = kube_mock::expect(&mut self.handle, method.clone(), path).await;
        self.sent.0.push(Call {
            method,
            path: path.to_string(),
            body,
        });
        send
    }
}

/// Chainable test Rollouts: `Rollout::test().deleting().direct()`.
pub trait TestRollout {
    /// `backend` in `shop`: 2 replicas, setWeight 20 then an untimed
    /// pause, weights on the `shop` Ingress; finalizer already added.
    fn test() -> Self;
    /// Being deleted (deletionTimestamp set).
    fn deleting(self) -> Self;
    /// Weights on a listener rule through the ELBv2 API, no Ingress.
    fn direct(self) -> Self;
    /// The pod template from Deployment `backend` (`workloadRef`).
    fn referencing_deployment(self, scale_down: &str) -> Self;
    /// With this status (JSON as the API server stores it).
    fn with_status(self, status: Value) -> Self;
    /// With a restart requested at this time.
    fn restarting(self, at: &str) -> Self;
    /// As the Rollout watch caches it, for `reconcile`.
    fn cached(self) -> Arc<CachedRollout>;
}

/// `trafficRouting.alb.targetHealth` where no ALB exists (a fake or a bare
/// cluster): ready pods count as served at once, and nothing drains.
pub fn no_alb_timing() -> serde_json::Value {
    json!({"settleSeconds": 0, "drainSeconds": 0})
}

impl TestRollout for Rollout {
    fn test() -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "gantry.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "backend", "namespace": NAMESPACE, "uid": "uid-1", "generation": 1,
                         "finalizers": [FINALIZER]},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "backend"}},
                "template": {"metadata": {"labels": {"app": "backend"}},
                             "spec": {"containers": [{"name": "api", "image": "backend:1"}]}},
                "strategy": {"canary": {
                    "canaryService": "backend-service-canary", "stableService": "backend-service",
                    "trafficRouting": {"alb": {"ingress": "shop", "servicePort": 80, "targetHealth": no_alb_timing()}},
                    "steps": [{"setWeight": 20}, {"pause": {}}]}}
            }
        }))
        .unwrap()
    }

    fn deleting(mut self) -> Rollout {
        self.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().unwrap(),
            ));
        self
    }

    fn direct(mut self) -> Rollout {
        let alb = self
            .spec
            .strategy
            .canary
            .as_mut()
            .and_then(|c| c.traffic_routing.as_mut())
            .and_then(|t| t.alb.as_mut())
            .expect("the test Rollout routes through the ALB");
        alb.ingress.clear();
        alb.ingresses = None;
        alb.direct = Some(
            serde_json::from_value(json!({
                "ruleArn": "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/web/1/2/3",
                "stableTargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/stable/1",
                "canaryTargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/canary/2"
            }))
            .unwrap(),
        );
        self
    }

    fn cached(self) -> Arc<CachedRollout> {
        Arc::new(CachedRollout::new(self).expect("a Rollout serialises"))
    }

    fn referencing_deployment(mut self, scale_down: &str) -> Rollout {
        self.spec.template = Default::default();
        self.spec.workload_ref = Some(
            serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": "backend", "scaleDown": scale_down}))
            .unwrap(),
        );
        self
    }

    fn with_status(mut self, status: Value) -> Rollout {
        self.status = Some(serde_json::from_value(status).expect("a valid RolloutStatus"));
        self
    }

    fn restarting(mut self, at: &str) -> Rollout {
        self.spec.restart_at = Some(at.into());
        self
    }
}

pub fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
           "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80}]}})
}

/// Deployment `backend` (2 replicas, image `backend:1`), as a
/// `workloadRef` finds it.
pub fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "backend", "namespace": NAMESPACE, "uid": "dep-1"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "backend"}},
                    "template": {"metadata": {"labels": {"app": "backend"}},
                                 "spec": {"containers": [{"name": "api", "image": "backend:from-deployment"}]}}}})
}

pub fn ingress_with(annotations: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": "shop", "namespace": NAMESPACE, "annotations": annotations},
           "spec": {"rules": [{"http": {"paths": [{"path": "/api", "pathType": "Prefix",
               "backend": {"service": {"name": "backend-service", "port": {"name": "use-annotation"}}}}]}}]}})
}

fn lease(holder: &str, renewed: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "lock", "namespace": "gantry-system", "resourceVersion": "7"},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed,
                    "leaseTransitions": 3}})
}

fn status_error(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
           "reason": reason, "message": message})
}
