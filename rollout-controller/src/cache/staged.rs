//! An index kept from a watch: events applied as they come, a relist
//! staged and swapped in whole once complete, so no reader sees it half
//! listed.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use kube::runtime::watcher;

#[derive(Clone, Default)]
pub struct Staged<I> {
    live: Arc<RwLock<I>>,
    /// A relist being read.
    staged: Arc<RwLock<Option<I>>>,
}

impl<I: Default> Staged<I> {
    pub fn read(&self) -> RwLockReadGuard<'_, I> {
        self.live.read().unwrap()
    }

    /// Applies a watch event with `set` (an object added or changed) and
    /// `remove` (deleted).
    pub fn observe<K>(
        &self,
        event: &watcher::Event<K>,
        set: impl Fn(&mut I, &K),
        remove: impl Fn(&mut I, &K),
    ) {
        match event {
            watcher::Event::Init => *self.staged.write().unwrap() = Some(I::default()),
            watcher::Event::InitApply(o) => {
                if let Some(staged) = self.staged.write().unwrap().as_mut() {
                    set(staged, o);
                }
            }
            watcher::Event::InitDone => {
                if let Some(fresh) = self.staged.write().unwrap().take() {
                    *self.live.write().unwrap() = fresh;
                }
            }
            watcher::Event::Apply(o) => set(&mut self.live.write().unwrap(), o),
            watcher::Event::Delete(o) => remove(&mut self.live.write().unwrap(), o),
        }
    }
}
