//! News of runs that end on this node, for whoever waits for one (an API
//! request with `wait`): the worker that records a run's end hands the
//! finished execution to its watchers at once, so a waiting request answers
//! within a millisecond of the end instead of polling the store. A run that
//! ends on another node is not news here; its watcher reads the store now
//! and then.

use crate::Node;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use taskhost_model::Execution;
use tokio::sync::oneshot;

/// Watchers by execution id.
#[derive(Default)]
pub(crate) struct Watchers {
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<Execution>>>>,
}

impl Watchers {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<Execution>>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A watch on one execution's end; dropping it stops watching.
pub struct Watch {
    node: Node,
    id: String,
    ended: oneshot::Receiver<Execution>,
}

impl Watch {
    /// The execution once it ends on this node (never, if it ends elsewhere).
    pub async fn ended(&mut self) -> Option<Execution> {
        (&mut self.ended).await.ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut waiting = self.node.inner.watchers.lock();
        if let Some(senders) = waiting.get_mut(&self.id) {
            senders.retain(|s| !s.is_closed());
            if senders.is_empty() {
                waiting.remove(&self.id);
            }
        }
    }
}

impl Node {
    /// Watches execution `id` for its end (before it is made, so no end is
    /// missed).
    pub fn watch(&self, id: &str) -> Watch {
        let (tx, rx) = oneshot::channel();
        self.inner
            .watchers
            .lock()
            .entry(id.to_owned())
            .or_default()
            .push(tx);
        Watch {
            node: self.clone(),
            id: id.to_owned(),
            ended: rx,
        }
    }

    /// An execution ended on this node: its watchers hear of it.
    pub(crate) fn ended(&self, e: &Execution) {
        let senders = self.inner.watchers.lock().remove(&e.id);
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(e.clone());
        }
    }
}
