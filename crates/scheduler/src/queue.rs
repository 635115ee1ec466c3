//! The node's in-memory half of the hybrid queue.
//!
//! The store is the truth; this holds the executions due soon so the
//! dispatcher can sleep exactly until the next one and pick the next run
//! without asking the store. Executions wait in `waiting` (by due time) until
//! they are due, then move to their tenant's `ready` heap (by priority, then
//! due time).
//!
//! Picking is fair across tenants: the next run comes from the tenant whose
//! best ready run has the highest priority; among tenants tied at that
//! priority, tenants take turns (round-robin, starting after the tenant served
//! last). Tenants at their concurrency limit are passed over in O(1) each, so
//! one tenant's backlog — however large, at whatever priority — costs other
//! tenants nothing. An id is held once; the dispatcher forgets it after its
//! claim attempt, whatever the result, so a later re-queue can bring it back.

use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use taskhost_store::Queued;

/// What the queue keeps of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: String,
    pub tenant: String,
    pub priority: i32,
    pub due_ms: i64,
}

type Ready = BinaryHeap<(i32, Reverse<i64>, Reverse<String>)>;

#[derive(Default)]
pub(crate) struct Queue {
    entries: HashMap<String, Entry>,
    waiting: BinaryHeap<Reverse<(i64, String)>>,
    /// Ready executions per tenant; a tenant with none has no key.
    ready: BTreeMap<String, Ready>,
    /// The tenant served last, where the next round-robin turn starts after.
    last_served: Option<String>,
}

impl Queue {
    /// Adds an execution unless it is already held — then only makes it due
    /// sooner, if it now is (a workflow woken by an event). Returns whether
    /// it changed anything.
    pub fn offer(&mut self, e: &Queued) -> bool {
        if let Some(entry) = self.entries.get_mut(&e.id) {
            let due = e.due_at.timestamp_millis();
            // A promoted entry is due already: never sooner than this.
            if due >= entry.due_ms {
                return false;
            }
            entry.due_ms = due;
            self.waiting.push(Reverse((due, e.id.clone())));
            return true;
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

    /// Moves everything due at `now` from waiting to its tenant's ready heap.
    pub fn promote(&mut self, now: DateTime<Utc>) {
        let now = now.timestamp_millis();
        while let Some(Reverse((due, _))) = self.waiting.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, id))) = self.waiting.pop() else {
                break;
            };
            // (A waiting item left behind when its entry was made due
            // sooner is stale: its due time is not the entry's.)
            if let Some(entry) = self.entries.get(&id).filter(|e| e.due_ms == due) {
                self.ready.entry(entry.tenant.clone()).or_default().push((
                    entry.priority,
                    Reverse(due),
                    Reverse(id),
                ));
            }
        }
    }

    /// When the next waiting execution falls due.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.waiting
            .peek()
            .and_then(|Reverse((due, _))| DateTime::from_timestamp_millis(*due))
    }

    /// The next ready execution among tenants that `can_run`, fairly (see the
    /// module docs); others stay ready.
    pub fn pop_ready(&mut self, can_run: impl Fn(&str) -> bool) -> Option<Entry> {
        let tenant = self.pick_tenant(can_run)?;
        let heap = self.ready.get_mut(&tenant)?;
        let (_, _, Reverse(id)) = heap.pop()?;
        if heap.is_empty() {
            self.ready.remove(&tenant);
        }
        self.last_served = Some(tenant);
        self.entries.get(&id).cloned()
    }

    /// The tenant to serve next: highest head priority, ties in turn.
    fn pick_tenant(&mut self, can_run: impl Fn(&str) -> bool) -> Option<String> {
        self.drop_stale_heads();
        let mut best: Option<(i32, &String)> = None;
        // Walk the tenants starting after the one served last, wrapping
        // around, so that the first of the tied ones is the next in turn.
        let start = self.last_served.as_deref().unwrap_or("");
        let after = self
            .ready
            .range::<str, _>((std::ops::Bound::Excluded(start), std::ops::Bound::Unbounded));
        let before = self
            .ready
            .range::<str, _>((std::ops::Bound::Unbounded, std::ops::Bound::Included(start)));
        for (tenant, heap) in after.chain(before) {
            let Some((priority, ..)) = heap.peek() else {
                continue;
            };
            if best.is_some_and(|(p, _)| *priority <= p) || !can_run(tenant) {
                continue;
            }
            best = Some((*priority, tenant));
        }
        best.map(|(_, t)| t.clone())
    }

    /// Heads of ready heaps whose ids were forgotten are dropped, so that a
    /// tenant's head is always a live entry.
    fn drop_stale_heads(&mut self) {
        let entries = &self.entries;
        self.ready.retain(|_, heap| {
            while let Some((_, _, Reverse(id))) = heap.peek() {
                if entries.contains_key(id) {
                    break;
                }
                heap.pop();
            }
            !heap.is_empty()
        });
    }

    /// Whether an execution is ready (due and held) now.
    pub fn has_ready(&mut self) -> bool {
        self.drop_stale_heads();
        !self.ready.is_empty()
    }

    /// Drops an id after its claim attempt.
    pub fn forget(&mut self, id: &str) {
        self.entries.remove(id);
    }

    /// Forgets everything held (the node stopped claiming).
    pub fn clear(&mut self) {
        *self = Queue::default();
    }

    /// Executions held (waiting or ready).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Ready executions.
    #[cfg(test)]
    pub fn ready_len(&self) -> usize {
        self.ready.values().map(BinaryHeap::len).sum()
    }
}

#[cfg(test)]
mod tests;
