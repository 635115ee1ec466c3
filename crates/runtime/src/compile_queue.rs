//! Fair admission of uploads' compilations between tenants.
//!
//! Compiling is the one cost of an upload that run limits do not cover: a
//! large Python component takes a core for ten seconds and more. Without
//! care, one tenant uploading a few at once holds every compile slot, and
//! another tenant's small upload waits behind all of them. So before an
//! upload takes any thread:
//!
//! - a tenant compiles at most [`CompileFairness::per_tenant`] at once (half
//!   the node's slots, at least one), so another tenant always finds one;
//! - a tenant's further uploads wait in its own queue, at most
//!   [`CompileFairness::waiting`] of them; one more is refused at once
//!   ([`CompileRefusal::Busy`], a 429 with `Retry-After`);
//! - freed slots go to the waiting tenants in turn (round-robin), not first
//!   come, first served;
//! - each tenant has a compile budget in CPU-seconds per hour (the quota
//!   `compile_seconds_per_hour`), a bucket that refills continuously; every
//!   compile is charged what it took, whether its plugin was then accepted
//!   or refused, and an upload over the budget is refused before compiling
//!   ([`CompileRefusal::Budget`]).
//!
//! Waiting is async: an upload whose request ends (the client went away, the
//! request timed out) leaves the queue without ever having taken a thread.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How uploads share the node's compile slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileFairness {
    /// Compilations at once on the node.
    pub slots: usize,
    /// Compilations at once for one tenant.
    pub per_tenant: usize,
    /// Uploads of one tenant waiting for a slot; more are refused.
    pub waiting: usize,
}

impl CompileFairness {
    /// `slots` at once, half of them (at least one) for one tenant, and two
    /// waiting per tenant.
    pub fn new(slots: usize) -> CompileFairness {
        let slots = slots.max(1);
        CompileFairness {
            slots,
            per_tenant: (slots / 2).max(1),
            waiting: 2,
        }
    }
}

/// Why an upload may not compile now.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileRefusal {
    #[error(
        "this tenant's uploads are compiling and {waiting} more are waiting; this one cannot compile now: try again later"
    )]
    Busy {
        waiting: usize,
        retry_after: Duration,
    },
    #[error(
        "quota compile_seconds_per_hour is {limit}; this tenant's compiles took {used:.1} s in the last hour"
    )]
    Budget {
        limit: u64,
        used: f64,
        retry_after: Duration,
    },
}

impl CompileRefusal {
    /// When to try again.
    pub fn retry_after(&self) -> Duration {
        match self {
            CompileRefusal::Busy { retry_after, .. }
            | CompileRefusal::Budget { retry_after, .. } => *retry_after,
        }
    }
}

/// A tenant's compile budget: CPU-seconds charged, refilled at its limit
/// per hour.
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// Seconds charged and not yet refilled at `at`.
    used: f64,
    at: Instant,
    /// Seconds per hour.
    limit: u64,
}

impl Budget {
    /// What is still charged at `now`.
    fn used_at(&self, now: Instant) -> f64 {
        let refilled = now.duration_since(self.at).as_secs_f64() * self.limit as f64 / 3600.0;
        (self.used - refilled).max(0.0)
    }
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    running_by: HashMap<String, usize>,
    waiting: HashMap<String, VecDeque<oneshot::Sender<()>>>,
    /// Tenants with waiting uploads, in the order they are served.
    turn: VecDeque<String>,
    budgets: HashMap<String, Budget>,
    /// How long compiles took lately (for `Retry-After`).
    recent: Duration,
}

/// The node's compile admission (see the module documentation).
#[derive(Debug, Clone)]
pub struct CompileQueue {
    fairness: CompileFairness,
    state: Arc<Mutex<State>>,
}

/// A compile slot held by one tenant's upload; given back when dropped.
#[derive(Debug)]
pub struct CompileTicket {
    queue: CompileQueue,
    tenant: String,
}

impl CompileQueue {
    pub fn new(fairness: CompileFairness) -> CompileQueue {
        CompileQueue {
            fairness,
            state: Arc::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a compile slot for `tenant`, whose budget is `budget`
    /// CPU-seconds per hour; refused at once when over the budget or when
    /// the tenant's queue is full.
    pub async fn admit(&self, tenant: &str, budget: u64) -> Result<CompileTicket, CompileRefusal> {
        let waiter = {
            let mut state = self.state();
            let now = Instant::now();
            if let Some(b) = state.budgets.get_mut(tenant) {
                b.limit = budget;
                let used = b.used_at(now);
                if used >= budget as f64 {
                    let rate = (budget.max(1) as f64) / 3600.0;
                    let wait = (used - budget as f64) / rate + 1.0;
                    return Err(CompileRefusal::Budget {
                        limit: budget,
                        used,
                        retry_after: Duration::from_secs_f64(wait.min(3600.0)),
                    });
                }
            }
            if self.may_start(&state, tenant) {
                self.start(&mut state, tenant);
                return Ok(self.ticket(tenant));
            }
            // Uploads that gave up waiting no longer count.
            if let Some(w) = state.waiting.get_mut(tenant) {
                w.retain(|tx| !tx.is_closed());
            }
            let queued = state.waiting.get(tenant).map_or(0, VecDeque::len);
            if queued >= self.fairness.waiting {
                let each = state.recent.max(Duration::from_secs(1));
                return Err(CompileRefusal::Busy {
                    waiting: queued,
                    retry_after: each * (queued as u32 + 1),
                });
            }
            let (tx, rx) = oneshot::channel();
            state
                .waiting
                .entry(tenant.to_owned())
                .or_default()
                .push_back(tx);
            if !state.turn.iter().any(|t| t == tenant) {
                state.turn.push_back(tenant.to_owned());
            }
            rx
        };
        // The slot was taken for us by whoever handed it over. (A waiter is
        // only ever dropped after being sent to, so this does not fail.)
        waiter
            .await
            .map(|()| self.ticket(tenant))
            .map_err(|_| CompileRefusal::Busy {
                waiting: 0,
                retry_after: Duration::from_secs(1),
            })
    }

    fn ticket(&self, tenant: &str) -> CompileTicket {
        CompileTicket {
            queue: self.clone(),
            tenant: tenant.to_owned(),
        }
    }

    fn may_start(&self, state: &State, tenant: &str) -> bool {
        state.running < self.fairness.slots
            && state.running_by.get(tenant).copied().unwrap_or(0) < self.fairness.per_tenant
            && state.waiting.get(tenant).is_none_or(VecDeque::is_empty)
    }

    fn start(&self, state: &mut State, tenant: &str) {
        state.running += 1;
        *state.running_by.entry(tenant.to_owned()).or_default() += 1;
    }

    /// Gives freed slots to waiting tenants in turn.
    fn hand_over(&self, state: &mut State) {
        let mut passes = state.turn.len();
        while state.running < self.fairness.slots && passes > 0 {
            let Some(tenant) = state.turn.pop_front() else {
                return;
            };
            passes -= 1;
            let busy = state.running_by.get(&tenant).copied().unwrap_or(0);
            if busy >= self.fairness.per_tenant {
                state.turn.push_back(tenant);
                continue;
            }
            let next = state.waiting.get_mut(&tenant).and_then(VecDeque::pop_front);
            let more = state.waiting.get(&tenant).is_some_and(|w| !w.is_empty());
            if more {
                state.turn.push_back(tenant.clone());
            } else {
                state.waiting.remove(&tenant);
            }
            if let Some(waiter) = next {
                self.start(state, &tenant);
                if waiter.send(()).is_err() {
                    // It left the queue (its request ended): free the slot.
                    self.finish(state, &tenant);
                }
                passes = state.turn.len();
            }
        }
    }

    fn finish(&self, state: &mut State, tenant: &str) {
        state.running = state.running.saturating_sub(1);
        if let Some(n) = state.running_by.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.running_by.remove(tenant);
            }
        }
    }

    /// Compiles running now on the node, and uploads waiting.
    pub fn usage(&self) -> (usize, usize) {
        let state = self.state();
        (
            state.running,
            state.waiting.values().map(VecDeque::len).sum(),
        )
    }

    /// CPU-seconds `tenant`'s compiles have charged and not yet refilled.
    pub fn charged(&self, tenant: &str) -> f64 {
        let state = self.state();
        state
            .budgets
            .get(tenant)
            .map_or(0.0, |b| b.used_at(Instant::now()))
    }
}

impl CompileTicket {
    /// Charges what the compile took to the tenant's budget (of `budget`
    /// per hour), accepted or not.
    pub fn charge(&self, took: Duration, budget: u64) {
        let mut state = self.queue.state();
        let now = Instant::now();
        let used = state
            .budgets
            .get(&self.tenant)
            .map_or(0.0, |b| b.used_at(now));
        let entry = Budget {
            used: used + took.as_secs_f64(),
            at: now,
            limit: budget,
        };
        state.budgets.insert(self.tenant.clone(), entry);
        state.recent = (state.recent + took) / 2;
        // Forget tenants whose budgets have refilled (bounded memory).
        if state.budgets.len() > 10_000 {
            state.budgets.retain(|_, b| b.used_at(now) > 0.0);
        }
    }
}

impl Drop for CompileTicket {
    fn drop(&mut self) {
        let queue = self.queue.clone();
        let mut state = queue.state();
        queue.finish(&mut state, &self.tenant);
        queue.hand_over(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;

    fn queue(slots: usize) -> CompileQueue {
        CompileQueue::new(CompileFairness::new(slots))
    }

    #[tokio::test]
    async fn a_tenant_takes_half_the_slots_and_waits_in_its_own_queue() {
        let q = queue(2);
        let a1 = q.admit("a", HOUR).await.expect("a's first");
        // A's second waits (its share is one of two slots)...
        let a2 = tokio::spawn({
            let q = q.clone();
            async move { q.admit("a", HOUR).await }
        });
        let a3 = tokio::spawn({
            let q = q.clone();
            async move { q.admit("a", HOUR).await }
        });
        tokio::task::yield_now().await;
        while q.usage().1 < 2 {
            tokio::task::yield_now().await;
        }
        // ...a fourth is refused at once...
        let refused = q.admit("a", HOUR).await.expect_err("a's queue is full");
        assert!(matches!(refused, CompileRefusal::Busy { waiting: 2, .. }));
        assert!(refused.retry_after() >= Duration::from_secs(1));
        // ...and B finds the other slot free.
        let b = q.admit("b", HOUR).await.expect("b is not behind a");
        assert_eq!(q.usage(), (2, 2));
        drop(b);
        assert_eq!(q.usage(), (1, 2), "b's slot is not a's to take");
        drop(a1);
        let a2 = a2.await.expect("task").expect("a's second");
        assert_eq!(q.usage(), (1, 1));
        drop(a2);
        let _a3 = a3.await.expect("task").expect("a's third");
    }

    #[tokio::test]
    async fn freed_slots_go_to_waiting_tenants_in_turn() {
        let q = queue(1);
        let first = q.admit("a", HOUR).await.expect("first");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for tenant in ["a", "a", "b", "c"] {
            let (queue, order) = (q.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let ticket = queue.admit(tenant, HOUR).await.expect("admitted");
                order.lock().unwrap().push(tenant);
                tokio::task::yield_now().await;
                drop(ticket);
            }));
            while q.usage().1 < waiting.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for w in waiting {
            w.await.expect("task");
        }
        assert_eq!(*order.lock().unwrap(), ["a", "b", "c", "a"]);
    }

    #[tokio::test]
    async fn a_spent_budget_refuses_until_it_refills() {
        let q = queue(2);
        let ticket = q.admit("a", 10).await.expect("first");
        ticket.charge(Duration::from_secs(12), 10);
        drop(ticket);
        assert!(q.charged("a") > 11.9);
        let refused = q.admit("a", 10).await.expect_err("over budget");
        let CompileRefusal::Budget {
            limit,
            used,
            retry_after,
        } = refused
        else {
            panic!("{refused:?}");
        };
        assert_eq!(limit, 10);
        assert!(used > 10.0);
        // 2 s over at 10 s/hour: 720 s to refill, plus one.
        assert!(retry_after > Duration::from_secs(700), "{retry_after:?}");
        q.admit("b", 10).await.expect("another tenant's budget");
    }

    #[tokio::test]
    async fn an_upload_that_gives_up_leaves_the_queue() {
        let q = queue(1);
        let held = q.admit("a", HOUR).await.expect("first");
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.admit("b", HOUR).await }
        });
        while q.usage().1 < 1 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        assert_eq!(q.usage(), (0, 0), "the abandoned slot is free again");
        q.admit("c", HOUR).await.expect("free");
    }
}
