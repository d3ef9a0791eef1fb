//! Faults the fake API server can be told to show, as a real one shows
//! them: watch streams that end without an error (the server's watch
//! timeout), `410 Gone` for a watch resumed from an old resourceVersion
//! (compaction), `429` with `Retry-After` and `503` on writes (priority and
//! fairness, an overloaded server), slow answers. Dropped connections and
//! outages are a TCP matter: see `crate::outage`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

#[derive(Default)]
pub struct Faults {
    /// Bumped to end every open watch stream, cleanly.
    pub ended: watch::Sender<u64>,
    /// Versions before this one are compacted away: a watch resumed from
    /// one gets `410 Gone`.
    pub compacted: Mutex<u64>,
    /// The next writes' answers: status code and `Retry-After` seconds.
    pub refusals: Mutex<VecDeque<(u16, Option<u32>)>>,
    /// Every answer waits this long first.
    pub delay: Mutex<Duration>,
    /// A second writer's status patch, applied just before the next
    /// status write to the object at this path arrives.
    pub interposed: Mutex<Option<(String, Value)>>,
}

impl Faults {
    /// Whether a watch from `version` is to be answered `410 Gone`.
    pub fn gone(&self, version: u64) -> bool {
        version < *self.compacted.lock().unwrap()
    }

    pub fn take_refusal(&self) -> Option<(u16, Option<u32>)> {
        self.refusals.lock().unwrap().pop_front()
    }

    /// The second writer's patch, if `path` is the status it waits for.
    pub fn take_interposed(&self, path: &str) -> Option<Value> {
        let mut interposed = self.interposed.lock().unwrap();
        let waits_for = interposed.as_ref().is_some_and(|(p, _)| p == path);
        waits_for.then(|| interposed.take().map(|(_, patch)| patch))?
    }

    pub fn delay(&self) -> Duration {
        *self.delay.lock().unwrap()
    }
}
