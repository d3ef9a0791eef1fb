//! The watches behind the caches, kept alive and honest about it.
//!
//! A watch that fails is listed again from scratch after a short backoff
//! with jitter (0.2 s doubling to 1 s, each delay up to twice that), not
//! resumed from its resourceVersion: across an error there is no telling
//! what was missed (the version may be compacted away, `410 Gone`), and
//! only a finished list says the cache is whole again. kube's own watcher
//! backoff grows to 30 s and more; after an API server outage that is a
//! minute of acting on caches that no longer follow the cluster.
//!
//! From the error until the relist is done the watch counts as down:
//! decisions wait (`fresh`), `/readyz` names it, and
//! `gantry_rollout_controller_watch_up{watch}` is 0. When every watch is up
//! again, every Rollout is reconciled.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use futures::StreamExt as _;
use futures::channel::mpsc::UnboundedSender;
use futures::stream::{self, BoxStream};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::server::Readiness;
use crate::telemetry::Metrics;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// The first list, or a relist after an error, is under way.
    Listing,
    Up,
    /// Failed with this error; a relist follows the backoff.
    Down(String),
}

/// Every watch's state, and whom to tell.
#[derive(Clone, Default)]
pub struct Watches {
    states: Arc<Mutex<BTreeMap<&'static str, State>>>,
    report: Option<Report>,
    /// Bumped to make every watch list again from scratch.
    relists: Arc<watch::Sender<u64>>,
}

#[derive(Clone)]
struct Report {
    readiness: Readiness,
    metrics: Metrics,
    /// Told when every watch is up again after one was not.
    recovered: UnboundedSender<()>,
}

impl Watches {
    /// Watches that report on `/readyz` and in `metrics`, and send on
    /// `recovered` when all are up again.
    pub fn reporting(
        readiness: Readiness,
        metrics: Metrics,
        recovered: UnboundedSender<()>,
    ) -> Watches {
        Watches {
            states: Arc::default(),
            report: Some(Report {
                readiness,
                metrics,
                recovered,
            }),
            relists: Arc::default(),
        }
    }

    /// Every watch lists again from scratch, and counts as listing from
    /// now (not from when its stream next runs): a replica that led
    /// before, lost the lease and leads again may have had a watch hang
    /// silently meanwhile, and decides only from caches listed anew.
    pub fn relist_all(&self) {
        let names: Vec<&'static str> = self
            .states
            .lock()
            .expect("watch states lock")
            .keys()
            .copied()
            .collect();
        for name in names {
            self.set(name, State::Listing);
        }
        self.relists.send_modify(|n| *n += 1);
    }

    /// Ok when every watch is up (the caches follow the cluster); else
    /// which are not, and why.
    pub fn fresh(&self) -> Result<(), String> {
        let states = self.states.lock().expect("watch states lock");
        describe(&states).map_or(Ok(()), Err)
    }

    /// A watch of `api` with `config`, registered as `name`: listed again
    /// after any error, its state tracked. Errors are reported here and
    /// not passed on: the controller backs off all its trigger streams
    /// together on any one's error (kube's `trigger_backoff`, up to 30 s
    /// and more), which after an outage stalls every watch for a minute.
    /// The stream never ends.
    pub fn watch<K>(
        &self,
        name: &'static str,
        api: Api<K>,
        config: watcher::Config,
    ) -> BoxStream<'static, Result<Event<K>, watcher::Error>>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        self.set(name, State::Listing);
        let start = move || watcher(api.clone(), config.clone()).boxed();
        let state = Watching {
            name,
            watches: self.clone(),
            inner: start(),
            delays: backoff().build(),
            relists: self.relists.subscribe(),
        };
        stream::unfold(state, move |mut s| {
            let start = start.clone();
            async move {
                loop {
                    let next = tokio::select! {
                        next = s.inner.next() => next?,
                        relist = s.relists.changed() => {
                            if relist.is_ok() {
                                s.inner = start();
                            }
                            continue;
                        }
                    };
                    match next {
                        Ok(event) => {
                            s.observe(&event);
                            return Some((Ok(event), s));
                        }
                        Err(e) => {
                            s.watches.set(s.name, State::Down(e.to_string()));
                            let delay = s.delays.next().unwrap_or(MAX_DELAY);
                            tokio::time::sleep(delay).await;
                            s.inner = start();
                        }
                    }
                }
            }
        })
        .boxed()
    }

    fn set(&self, name: &'static str, state: State) {
        let mut states = self.states.lock().expect("watch states lock");
        let was_fresh = describe(&states).is_none();
        if states.get(name) == Some(&state) {
            return;
        }
        match &state {
            State::Down(error) => {
                tracing::warn!(watch = name, %error, "watch down: decisions wait")
            }
            State::Up if states.get(name).is_some() => tracing::info!(watch = name, "watch up"),
            _ => {}
        }
        if let Some(report) = &self.report {
            let failed = matches!(state, State::Down(_));
            report.metrics.watch_state(name, state == State::Up, failed);
        }
        states.insert(name, state);
        let Some(report) = &self.report else { return };
        match describe(&states) {
            Some(why) => report.readiness.not_ready(&why),
            None => {
                report.readiness.ready();
                if !was_fresh {
                    let _ = report.recovered.unbounded_send(());
                }
            }
        }
    }
}

/// One watch's stream state: the kube watcher it runs, and the backoff
/// before the next one after an error.
struct Watching<K: Resource + Clone + 'static> {
    name: &'static str,
    watches: Watches,
    inner: BoxStream<'static, Result<Event<K>, watcher::Error>>,
    delays: backon::ExponentialBackoff,
    relists: watch::Receiver<u64>,
}

impl<K: Resource + Clone + 'static> Watching<K> {
    fn observe(&mut self, event: &Event<K>) {
        match event {
            Event::Init => self.watches.set(self.name, State::Listing),
            Event::InitDone => {
                self.watches.set(self.name, State::Up);
                self.delays = backoff().build();
            }
            _ => {}
        }
    }
}

const MAX_DELAY: Duration = Duration::from_secs(1);

/// 0.2 s doubling to 1 s, each with up to as much again as jitter, so
/// replicas of many controllers do not relist in step.
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
}

/// Why the caches are not all fresh, naming each watch that is not up.
fn describe(states: &BTreeMap<&'static str, State>) -> Option<String> {
    let not_up: Vec<String> = states
        .iter()
        .filter_map(|(name, state)| match state {
            State::Up => None,
            State::Listing => Some(format!("watch {name}: listing")),
            State::Down(error) => Some(format!("watch {name}: down ({error})")),
        })
        .collect();
    (!not_up.is_empty()).then(|| not_up.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_only_when_every_watch_is_up_and_recovery_is_announced_once() {
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let readiness = Readiness::new("starting");
        let watches = Watches::reporting(readiness.clone(), Metrics::default(), tx);
        watches.set("rollouts", State::Listing);
        watches.set("services", State::Listing);
        assert_eq!(
            readiness.why_not().as_deref(),
            Some("watch rollouts: listing; watch services: listing")
        );
        watches.set("rollouts", State::Up);
        assert!(watches.fresh().is_err());
        watches.set("services", State::Up);
        assert_eq!(watches.fresh(), Ok(()));
        assert_eq!(readiness.why_not(), None);
        assert!(rx.try_recv().is_ok(), "recovered");

        watches.set("services", State::Down("connection refused".into()));
        assert_eq!(
            watches.fresh(),
            Err("watch services: down (connection refused)".into())
        );
        watches.set("services", State::Listing);
        watches.set("services", State::Up);
        watches.set("services", State::Up);
        assert!(rx.try_recv().is_ok(), "recovered again");
        assert!(rx.try_recv().is_err(), "once per recovery");
    }

    #[test]
    fn the_backoff_stays_under_two_seconds() {
        let delays: Vec<Duration> = backoff().build().take(20).collect();
        assert!(delays[0] >= Duration::from_millis(200));
        assert!(delays.iter().all(|d| *d <= 2 * MAX_DELAY), "{delays:?}");
    }
}
