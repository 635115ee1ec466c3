//! Fault injection: make chosen store operations fail, as a database outage
//! would, for tests and fault drills.
//!
//! A [`Faults`] belongs to a [`Store`](super::Store) and is disarmed unless a
//! caller arms it (one atomic load per guarded operation when disarmed). The
//! failure is a transient [`StoreError::Unavailable`], the kind a dropped
//! connection or a stepping-down server gives, so the code under test takes
//! exactly the path a real outage would. Nothing in `serve` arms it.

use super::StoreError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Store operations that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Claiming a queued execution.
    Claim,
    /// Renewing a running execution's lease.
    Renew,
    /// Recording how a run ended.
    Complete,
    /// Giving a running execution back to the queue.
    Release,
    /// Reading a plugin's record or code before a run.
    LoadPlugin,
    /// Writing a node's heartbeat (as a full disk would refuse it).
    Heartbeat,
}

#[derive(Debug, Clone, Copy)]
enum Plan {
    Until(Instant),
    Times(u32),
    /// Answers that come late: the operation is done, its answer is not
    /// back yet (a slow store).
    Slow {
        delay: Duration,
        times: u32,
    },
}

/// The armed faults of one store.
#[derive(Debug, Default)]
pub struct Faults {
    armed: AtomicBool,
    plans: Mutex<HashMap<Op, Plan>>,
}

impl Faults {
    /// `op` fails for the next `duration` (real time).
    pub fn fail_for(&self, op: Op, duration: Duration) {
        self.arm(op, Plan::Until(Instant::now() + duration));
    }

    /// `op` fails the next `times` times.
    pub fn fail_times(&self, op: Op, times: u32) {
        self.arm(op, Plan::Times(times));
    }

    /// The next `times` answers of `op` come `delay` late: the operation
    /// is done in the store, and its caller hears of it only then.
    pub fn slow_times(&self, op: Op, delay: Duration, times: u32) {
        self.arm(op, Plan::Slow { delay, times });
    }

    /// Every fault is lifted.
    pub fn heal(&self) {
        self.plans().clear();
        self.armed.store(false, Ordering::Release);
    }

    fn arm(&self, op: Op, plan: Plan) {
        self.plans().insert(op, plan);
        self.armed.store(true, Ordering::Release);
    }

    fn plans(&self) -> std::sync::MutexGuard<'_, HashMap<Op, Plan>> {
        self.plans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How late `op`'s answer is to come, if it is armed to be slow.
    pub(crate) fn delay(&self, op: Op) -> Option<Duration> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        match self.plans().get_mut(&op) {
            Some(Plan::Slow { delay, times }) if *times > 0 => {
                *times -= 1;
                Some(*delay)
            }
            _ => None,
        }
    }

    /// Fails if `op` is armed to fail.
    pub(crate) fn check(&self, op: Op) -> Result<(), StoreError> {
        if !self.armed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut plans = self.plans();
        let fails = match plans.get_mut(&op) {
            Some(Plan::Until(until)) => Instant::now() < *until,
            Some(Plan::Times(left)) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        };
        if fails {
            return Err(StoreError::unavailable(format!(
                "injected fault: {op:?} is failing"
            )));
        }
        Ok(())
    }
}
