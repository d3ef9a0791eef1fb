//! Notifications, the glue side: destinations read from the
//! `gantry-notifications` ConfigMap and Secret in the controller's
//! namespace (again every 30 s), which occurrences are due (decided by
//! `rollout_core::notify`, recorded in the status reconcile writes), and
//! delivery in the background: reconciling never waits for a receiver.
//! At most `capacity` deliveries are pending at once; beyond that new ones
//! are dropped and counted.

mod deliver;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::{Client, ResourceExt as _};
use rollout_core::notify::config::{self, Destination};
use rollout_core::notify::{self, Occurrence};
use rollout_core::types::{Rollout, RolloutStatus};
use rollout_core::validate::Plan;
use tokio::sync::Semaphore;

use crate::telemetry::Metrics;

/// How often the ConfigMap and Secret are read again.
const RELOAD: Duration = Duration::from_secs(30);

pub struct Settings {
    /// The controller's namespace, where the ConfigMap and Secret live.
    pub namespace: String,
    /// Their name (both).
    pub name: String,
    /// Deliveries pending at once (queued, being sent or retried).
    pub capacity: usize,
}

/// Destinations as last read.
#[derive(Default)]
struct Loaded {
    destinations: Vec<Destination>,
    secret: BTreeMap<String, String>,
}

/// One occurrence for one destination, once the status recording it is written.
pub struct Notice {
    destination: String,
    occurrence: Occurrence,
    seen: Instant,
}

pub struct Notifier {
    settings: Settings,
    loaded: RwLock<Arc<Loaded>>,
    pending: Arc<Semaphore>,
    http: reqwest::Client,
    metrics: Metrics,
    /// Problems already logged (a bad annotation is not logged every reconcile).
    told: Mutex<BTreeSet<String>>,
}

impl Notifier {
    /// Reads the destinations now, then keeps them fresh in the background.
    pub async fn start(
        client: Client,
        settings: Settings,
        metrics: Metrics,
    ) -> anyhow::Result<Arc<Notifier>> {
        let notifier = Arc::new(Notifier {
            pending: Arc::new(Semaphore::new(settings.capacity)),
            settings,
            loaded: RwLock::default(),
            http: deliver::http_client()?,
            metrics,
            told: Mutex::default(),
        });
        notifier.reload(&client).await;
        let reloading = notifier.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD).await;
                reloading.reload(&client).await;
            }
        });
        Ok(notifier)
    }

    async fn reload(&self, client: &Client) {
        let (ns, name) = (&self.settings.namespace, &self.settings.name);
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let data = match configmaps.get_opt(name).await {
            Ok(Some(cm)) => cm.data.unwrap_or_default(),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                self.tell(format!(
                    "cannot read ConfigMap {ns}/{name} (notifications unchanged): {e}"
                ));
                return;
            }
        };
        let secret = match secrets.get_opt(name).await {
            Ok(secret) => secret
                .and_then(|s| s.data)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| Some((k, String::from_utf8(v.0).ok()?)))
                .collect(),
            Err(e) => {
                self.tell(format!(
                    "cannot read Secret {ns}/{name} (notifications unchanged): {e}"
                ));
                return;
            }
        };
        let (destinations, problems) = config::parse(name, &data);
        for problem in problems {
            self.tell(problem);
        }
        let names: Vec<&str> = destinations.iter().map(|d| d.name.as_str()).collect();
        let before = self.loaded();
        let changed = before.destinations != destinations || before.secret != secret;
        if changed {
            tracing::info!(destinations = ?names, "notification destinations loaded from {ns}/{name}");
        }
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Loaded {
            destinations,
            secret,
        });
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Logs `problem` the first time it is seen.
    fn tell(&self, problem: String) {
        if self
            .told
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(problem.clone())
        {
            tracing::warn!("notifications: {problem}");
        }
    }

    /// The notifications `after` (the status about to be written) calls
    /// for, recorded in it. A Rollout nobody subscribes to is left alone.
    pub fn due(
        &self,
        rollout: &Rollout,
        plan: Option<&Plan>,
        after: &mut RolloutStatus,
    ) -> Vec<Notice> {
        let loaded = self.loaded();
        if loaded.destinations.is_empty() {
            return Vec::new();
        }
        let (subscribed, problems) =
            config::subscriptions(rollout.annotations(), &loaded.destinations);
        let who = format!(
            "Rollout {}/{}",
            rollout.namespace().unwrap_or_default(),
            rollout.name_any()
        );
        for problem in problems {
            self.tell(format!("{who}: {problem}"));
        }
        if subscribed.is_empty() {
            return Vec::new();
        }
        let seen = Instant::now();
        notify::due(rollout, plan, after, Timestamp::now())
            .into_iter()
            .flat_map(|occurrence| {
                subscribed
                    .iter()
                    .filter(|(trigger, _)| *trigger == occurrence.trigger)
                    .map(|(_, destination)| Notice {
                        destination: destination.clone(),
                        occurrence: occurrence.clone(),
                        seen,
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Sends `notices` in the background (after their status was written).
    pub fn send(&self, notices: Vec<Notice>) {
        let loaded = self.loaded();
        for notice in notices {
            let Some(destination) = loaded
                .destinations
                .iter()
                .find(|d| d.name == notice.destination)
            else {
                continue;
            };
            let request = match deliver::request(
                destination,
                &notice.occurrence,
                &loaded.secret,
                &self.settings.name,
            ) {
                Ok(request) => request,
                Err(problem) => {
                    self.tell(format!("destination {}: {problem}", destination.name));
                    self.metrics
                        .notification_dropped(&destination.name, "misconfigured");
                    continue;
                }
            };
            let Ok(permit) = self.pending.clone().try_acquire_owned() else {
                tracing::warn!(
                    destination = %destination.name,
                    id = %notice.occurrence.key,
                    "notification dropped: {} deliveries already pending",
                    self.settings.capacity
                );
                self.metrics
                    .notification_dropped(&destination.name, "queue_full");
                continue;
            };
            let (http, metrics) = (self.http.clone(), self.metrics.clone());
            tokio::spawn(async move {
                deliver::deliver(&http, &metrics, request, notice.seen).await;
                drop(permit);
            });
        }
    }
}
