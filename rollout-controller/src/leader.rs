//! Leader election on a `coordination.k8s.io` Lease, so two replicas can run
//! and only one writes. The holder renews every `renew`; another replica
//! takes over once the lease has not been renewed for `duration`, or at
//! once when the holder released it on a graceful shutdown (standbys look
//! every `retry`). Updates use the Lease's resourceVersion, so two
//! candidates cannot both win.
//!
//! A holder that cannot renew (API server gone, answers too slow) keeps
//! trying every `retry` and stops leading once `renew_deadline` has passed
//! since its last renewal began, as client-go's does: that is before
//! `duration` has, so it has stopped before anyone can take the lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct Elector {
    pub api: Api<Lease>,
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    /// How long a holder may fail to renew before it stops leading
    /// (shorter than `duration`).
    pub renew_deadline: Duration,
    pub renew: Duration,
    /// How often a standby looks for a released or expired lease.
    pub retry: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the lease namespace {0:?} does not exist: create it, or name an existing one with --lease-namespace (POD_NAMESPACE)"
    )]
    NoNamespace(String),
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew: Duration::from_secs(2),
            retry: Duration::from_millis(500),
        }
    }

    /// One election round: true when this replica holds the lease afterwards.
    pub async fn try_acquire(&self, now: Timestamp) -> Result<bool, Error> {
        self.acquire(now).await.map_err(|e| self.error(e))
    }

    fn error(&self, e: kube::Error) -> Error {
        match &e {
            // A missing namespace answers 404 to the create, naming the namespace.
            kube::Error::Api(s)
                if s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "namespaces") =>
            {
                Error::NoNamespace(self.namespace.clone())
            }
            _ => Error::Api {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                source: e,
            },
        }
    }

    async fn acquire(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let spec = |transitions: i32| LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        };
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(spec(0)),
            };
            return won(self.api.create(&PostParams::default(), &lease).await);
        };
        let current = lease.spec.clone().unwrap_or_default();
        let mine = current.holder_identity.as_deref() == Some(self.identity.as_str());
        let ttl = SignedDuration::from_secs(current.lease_duration_seconds.unwrap_or(15).into());
        let expired = current.renew_time.as_ref().is_none_or(|t| t.0 + ttl < now);
        let released = current.holder_identity.as_deref().is_none_or(str::is_empty);
        if !mine && !expired && !released {
            return Ok(false);
        }
        let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let mut next = spec(transitions);
        if mine {
            next.acquire_time = current.acquire_time;
        }
        lease.spec = Some(next);
        won(self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await)
    }

    /// Runs elections until `stop`, publishing leadership on `tx`. It does
    /// not release the lease: the caller does, once nothing writes any more.
    pub async fn run(self: Arc<Self>, tx: watch::Sender<bool>, stop: CancellationToken) {
        let mut failure = Failure::default();
        // When the last successful renewal was sent: the lease as others
        // see it runs from a moment after that.
        let mut renewed: Option<Instant> = None;
        while !stop.is_cancelled() {
            let asked = Instant::now();
            let budget = match renewed {
                Some(at) => self.renew_deadline.saturating_sub(at.elapsed()),
                None => self.renew_deadline,
            };
            let round = tokio::select! {
                round = tokio::time::timeout(budget, self.try_acquire(Timestamp::now())) => round,
                _ = stop.cancelled() => break,
            };
            let answered = match round {
                Ok(Ok(won)) => {
                    failure.clear();
                    renewed = won.then_some(asked);
                    true
                }
                Ok(Err(e)) => {
                    failure.report(&e.to_string(), renewed.is_some());
                    false
                }
                Err(_) => {
                    let why = format!("no answer from the API server within {budget:?}");
                    failure.report(&why, renewed.is_some());
                    false
                }
            };
            renewed = renewed.filter(|at| at.elapsed() < self.renew_deadline);
            let leading = renewed.is_some();
            if *tx.borrow() != leading {
                tracing::info!(leading, identity = %self.identity, "leadership changed");
            }
            // Receivers hear of changes only.
            tx.send_if_modified(|was| std::mem::replace(was, leading) != leading);
            let wait = if leading && answered {
                self.renew
            } else {
                self.retry
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => {}
            }
        }
        tx.send_replace(false);
    }

    /// Gives the lease up if this replica holds it (client-go's
    /// ReleaseOnCancel), so a standby takes over at once instead of after
    /// `duration`.
    pub async fn release(&self) -> Result<(), Error> {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(false);
            };
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            let now = MicroTime(Timestamp::now());
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            // A conflict: taken meanwhile, nothing left to release.
            won(self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await)
        }
        .await
        .map_err(|e| self.error(e))?;
        if result {
            tracing::info!(identity = %self.identity, "leader lease released");
        }
        Ok(())
    }
}

/// A write guarded by the resourceVersion read: false when another replica
/// wrote first (409).
fn won<T>(write: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match write {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The last election error, so each is logged once, not every round.
#[derive(Default)]
struct Failure(String);

impl Failure {
    fn report(&mut self, error: &str, leading: bool) {
        if self.0 != error {
            if leading {
                tracing::warn!(%error, "cannot renew the leader lease; still leading until the renew deadline");
            } else {
                tracing::warn!(%error, "leader election failed; not leading");
            }
            self.0 = error.to_string();
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}
