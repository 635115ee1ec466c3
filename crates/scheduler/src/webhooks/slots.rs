//! What keeps one tenant's webhooks from holding up another's: delivery
//! slots (at most [`AT_ONCE`] executions' deliveries in flight on a node,
//! at most [`PER_TENANT`] of one tenant's), and a circuit breaker per target
//! (after [`TRIP_AFTER`] failures in a row, a target is not tried for
//! [`OPEN_FOR`]; its deliveries wait, without an attempt, until it closes).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Executions whose deliveries one node sends at once.
pub const AT_ONCE: usize = 32;
/// Of them, at most this many of one tenant.
pub const PER_TENANT: usize = 4;
/// Failed attempts in a row that open a target's circuit.
pub const TRIP_AFTER: u32 = 5;
/// How long an open circuit keeps its target untried.
pub const OPEN_FOR: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The delivery slots of one node.
#[derive(Default)]
pub struct Slots {
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    total: usize,
    by_tenant: HashMap<String, usize>,
    executions: HashSet<String>,
}

/// A held slot; dropping it gives it back.
pub struct Slot {
    slots: Arc<Slots>,
    tenant: String,
    execution: String,
}

impl Slots {
    /// The tenants with every slot of theirs taken (left out of the next
    /// read of due deliveries), or every tenant's if the node is full.
    pub fn full(&self) -> Option<Vec<String>> {
        let held = lock(&self.held);
        if held.total >= AT_ONCE {
            return None;
        }
        let full = held.by_tenant.iter().filter(|(_, n)| **n >= PER_TENANT);
        Some(full.map(|(t, _)| t.clone()).collect())
    }

    /// A slot for `execution` of `tenant`, unless the node or the tenant
    /// is full or the execution is being delivered already.
    pub fn take(self: &Arc<Self>, tenant: &str, execution: &str) -> Option<Slot> {
        let mut held = lock(&self.held);
        let mine = held.by_tenant.get(tenant).copied().unwrap_or(0);
        if held.total >= AT_ONCE || mine >= PER_TENANT || held.executions.contains(execution) {
            return None;
        }
        held.total += 1;
        *held.by_tenant.entry(tenant.to_owned()).or_default() += 1;
        held.executions.insert(execution.to_owned());
        Some(Slot {
            slots: self.clone(),
            tenant: tenant.to_owned(),
            execution: execution.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = lock(&self.slots.held);
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_tenant.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.by_tenant.remove(&self.tenant);
            }
        }
        held.executions.remove(&self.execution);
    }
}

/// Circuit breakers by target (scheme, host and port of the URL).
#[derive(Default)]
pub struct Breakers {
    targets: Mutex<HashMap<String, Breaker>>,
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// Most targets remembered; past it, closed ones are forgotten.
const MAX_TARGETS: usize = 10_000;

impl Breakers {
    /// Until when `target`'s circuit is open, if it is.
    pub fn open_until(&self, target: &str) -> Option<Instant> {
        let targets = lock(&self.targets);
        let until = targets.get(target)?.open_until?;
        (until > Instant::now()).then_some(until)
    }

    /// Records an attempt's outcome on `target`: a success closes its
    /// circuit, the [`TRIP_AFTER`]th failure in a row opens it.
    pub fn record(&self, target: &str, delivered: bool) {
        let mut targets = lock(&self.targets);
        if targets.len() >= MAX_TARGETS {
            targets.retain(|_, b| b.open_until.is_some());
        }
        let breaker = targets.entry(target.to_owned()).or_default();
        if delivered {
            *breaker = Breaker::default();
            return;
        }
        breaker.failures += 1;
        if breaker.failures >= TRIP_AFTER {
            breaker.open_until = Some(Instant::now() + OPEN_FOR);
            breaker.failures = 0;
        }
    }
}

/// The breaker's key for a URL: its origin.
pub fn target_of(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_at_most_its_slots_and_gives_them_back() {
        let slots = Arc::new(Slots::default());
        let held: Vec<Slot> = (0..PER_TENANT)
            .map(|i| slots.take("a", &format!("e{i}")).expect("a slot"))
            .collect();
        assert!(slots.take("a", "more").is_none(), "a's slots are full");
        assert_eq!(slots.full(), Some(vec!["a".to_owned()]));
        assert!(slots.take("b", "f0").is_some(), "b has its own");
        drop(held);
        assert_eq!(slots.full(), Some(Vec::new()));
        let again = slots.take("a", "x").expect("given back");
        assert!(slots.take("a", "x").is_none(), "one execution once");
        drop(again);
    }

    #[test]
    fn a_breaker_opens_after_failures_in_a_row_and_a_success_closes_it() {
        let b = Breakers::default();
        for _ in 0..TRIP_AFTER - 1 {
            b.record("http://t", false);
        }
        assert!(b.open_until("http://t").is_none());
        b.record("http://t", true);
        for _ in 0..TRIP_AFTER - 1 {
            b.record("http://t", false);
        }
        assert!(b.open_until("http://t").is_none(), "a success reset it");
        b.record("http://t", false);
        assert!(b.open_until("http://t").is_some(), "open");
        assert!(b.open_until("http://other").is_none());
    }
}
