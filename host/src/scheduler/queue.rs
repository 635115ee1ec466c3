//! The node's in-memory half of the hybrid queue.
//!
//! The store is the truth; this holds the executions due soon so the
//! dispatcher can sleep exactly until the next one and pick by priority
//! without asking the store. Two heaps: `waiting` by due time, and `ready`
//! (due now) by priority, then due time. An id is held once; the dispatcher
//! forgets it after its claim attempt, whatever the result, so a later re-queue
//! can bring it back.

use crate::model::Execution;
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// What the queue keeps of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: String,
    pub tenant: String,
    pub priority: i32,
    pub due_ms: i64,
}

#[derive(Default)]
pub(crate) struct Queue {
    entries: HashMap<String, Entry>,
    waiting: BinaryHeap<Reverse<(i64, String)>>,
    ready: BinaryHeap<(i32, Reverse<i64>, Reverse<String>)>,
}

impl Queue {
    /// Adds an execution unless it is already held. Returns whether it was new.
    pub fn offer(&mut self, e: &Execution) -> bool {
        if self.entries.contains_key(&e.id) {
            return false;
        }
        let entry = Entry {
            id: e.id.clone(),
            tenant: e.tenant.clone(),
            priority: e.priority,
            due_ms: e.due_at.timestamp_millis(),
        };
        self.waiting.push(Reverse((entry.due_ms, entry.id.clone())));
        self.entries.insert(e.id.clone(), entry);
        true
    }

    /// Moves everything due at `now` from waiting to ready.
    pub fn promote(&mut self, now: DateTime<Utc>) {
        let now = now.timestamp_millis();
        while let Some(Reverse((due, _))) = self.waiting.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, id))) = self.waiting.pop() else {
                break;
            };
            if let Some(entry) = self.entries.get(&id) {
                self.ready.push((entry.priority, Reverse(due), Reverse(id)));
            }
        }
    }

    /// When the next waiting execution falls due.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.waiting
            .peek()
            .and_then(|Reverse((due, _))| DateTime::from_timestamp_millis(*due))
    }

    /// The best ready execution whose tenant `can_run`; others stay ready.
    pub fn pop_ready(&mut self, can_run: impl Fn(&str) -> bool) -> Option<Entry> {
        let mut skipped = Vec::new();
        let mut found = None;
        while let Some(item) = self.ready.pop() {
            let Some(entry) = self.entries.get(&item.2.0) else {
                continue;
            };
            if can_run(&entry.tenant) {
                found = Some(entry.clone());
                break;
            }
            skipped.push(item);
        }
        self.ready.extend(skipped);
        found
    }

    /// Drops an id after its claim attempt.
    pub fn forget(&mut self, id: &str) {
        self.entries.remove(id);
    }

    /// Executions held (waiting or ready).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Ready executions.
    #[cfg(test)]
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(id: &str, tenant: &str, priority: i32, due_s: i64) -> Execution {
        let due = DateTime::from_timestamp(due_s, 0).expect("time");
        let mut e = Execution::queued(tenant, "p", due, due);
        e.id = id.into();
        e.priority = priority;
        e
    }

    #[test]
    fn priority_then_due_time_among_ready_ones() {
        let mut q = Queue::default();
        for e in [
            exec("a", "t", 0, 10),
            exec("b", "t", 5, 20),
            exec("c", "t", 5, 15),
            exec("d", "t", 9, 100),
        ] {
            assert!(q.offer(&e));
        }
        assert!(!q.offer(&exec("a", "t", 0, 10)), "held once");
        assert_eq!(q.next_due(), DateTime::from_timestamp(10, 0));
        q.promote(DateTime::from_timestamp(50, 0).expect("time"));
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop_ready(|_| true).map(|e| e.id)).collect();
        assert_eq!(order, vec!["c", "b", "a"], "d is not due yet");
        assert_eq!(q.next_due(), DateTime::from_timestamp(100, 0));
    }

    #[test]
    fn tenants_at_their_limit_are_passed_over() {
        let mut q = Queue::default();
        q.offer(&exec("a1", "a", 9, 1));
        q.offer(&exec("b1", "b", 1, 1));
        q.promote(DateTime::from_timestamp(5, 0).expect("time"));
        assert_eq!(q.pop_ready(|t| t != "a").map(|e| e.id), Some("b1".into()));
        assert_eq!(q.ready_len(), 1, "a1 still waits for its tenant");
        assert_eq!(q.pop_ready(|_| true).map(|e| e.id), Some("a1".into()));
    }
}
