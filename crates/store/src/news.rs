//! News of queued executions from other processes.
//!
//! A backend with a change feed (MongoDB change streams) tells the nodes of
//! every execution that becomes queued — made, retried or re-queued
//! elsewhere — with what a queue keeps of it ([`Queued`]). A node takes them
//! into its heap as they come, without reading the store: new work costs
//! each node the same whatever the backlog. Claims, completions and other
//! changes are not news. If a node falls behind by more than [`MAX_NEWS`],
//! the news is dropped and the node is told to refill from the store instead.

use super::Queued;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// The most news held for a node that has not taken it yet.
pub const MAX_NEWS: usize = 100_000;

/// Where a backend's change feed leaves news; a node takes it.
#[derive(Default)]
pub struct News {
    queued: Mutex<Vec<Queued>>,
    /// More came than was held: refill from the store.
    overflowed: AtomicBool,
    notify: Notify,
}

impl News {
    /// An execution became queued in the store.
    pub fn queued(&self, q: Queued) {
        {
            let mut held = self.queued.lock().unwrap_or_else(|p| p.into_inner());
            if held.len() < MAX_NEWS {
                held.push(q);
            } else {
                self.overflowed.store(true, Ordering::Relaxed);
            }
        }
        self.notify.notify_one();
    }

    /// News may have been missed (the feed was down): refill from the store.
    pub fn missed(&self) {
        self.overflowed.store(true, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Waits until there is news.
    pub async fn arrived(&self) {
        self.notify.notified().await;
    }

    /// The news so far, and whether some was dropped (then refill).
    pub fn take(&self) -> (Vec<Queued>, bool) {
        let held = std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()));
        (held, self.overflowed.swap(false, Ordering::Relaxed))
    }
}
