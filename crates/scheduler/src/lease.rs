//! Holding a lease safely, on this node's monotonic clock.
//!
//! A claim's lease expires at a wall-clock time in the store, and any node
//! may re-queue it once its own wall clock passes that time. So a node only
//! trusts the part of its lease that survives clock skew: it counts from
//! when it *asked* for the claim or renewal, on its monotonic clock, and
//! trusts `lease − lease/3` of it ([`TRUSTED`]). Clocks of different nodes may
//! therefore disagree by up to a third of the lease (10 s with the default 30 s)
//! without a run being taken over while its node still runs it. A node that
//! cannot confirm its lease within that time stops the run (fencing); the
//! execution then runs again elsewhere, as a host fault.
//!
//! [`ClockWatch`] notices when the wall clock steps (NTP, a VM resumed, an
//! operator): every lease the node holds is then renewed at once, so that its
//! expiry is measured again on the new time.

use chrono::{DateTime, Utc};
use std::sync::Mutex;
use std::time::Duration;
use taskhost_store::Lease;
use tokio::time::Instant;

/// The share of a lease a node relies on: two thirds. The rest is the clock
/// skew between nodes that the design tolerates.
pub(crate) fn trusted(lease: Duration) -> Duration {
    lease - lease / 3
}

/// A lease this node holds, and until when it is sure of it.
pub(crate) struct HeldLease {
    pub(crate) lease: Lease,
    length: Duration,
    sure_until: Instant,
}

impl HeldLease {
    /// A lease of `length` granted by a request sent at `asked`.
    pub(crate) fn new(lease: Lease, length: Duration, asked: Instant) -> HeldLease {
        HeldLease {
            lease,
            length,
            sure_until: asked + trusted(length),
        }
    }

    /// A renewal sent at `asked` succeeded.
    pub(crate) fn renewed(&mut self, asked: Instant) {
        self.sure_until = self.sure_until.max(asked + trusted(self.length));
    }

    /// Whether the lease is surely still ours.
    pub(crate) fn sure(&self) -> bool {
        Instant::now() < self.sure_until
    }

    /// How long it surely stays ours.
    pub(crate) fn remaining(&self) -> Duration {
        self.sure_until.saturating_duration_since(Instant::now())
    }
}

/// A forward or backward step of the wall clock larger than this is
/// reported and makes the node renew its leases at once.
pub(crate) const STEP: Duration = Duration::from_secs(2);

/// Compares the wall clock's progress with the monotonic clock's.
pub(crate) struct ClockWatch {
    last: Mutex<(Instant, DateTime<Utc>)>,
}

impl ClockWatch {
    pub(crate) fn new(wall: DateTime<Utc>) -> ClockWatch {
        ClockWatch {
            last: Mutex::new((Instant::now(), wall)),
        }
    }

    /// Looks at the clocks; returns how far the wall clock jumped (forward
    /// positive) since the last look, if more than [`STEP`].
    pub(crate) fn look(&self, wall: DateTime<Utc>) -> Option<chrono::Duration> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let monotonic = chrono::Duration::from_std(now - last.0).unwrap_or(chrono::Duration::MAX);
        let step = (wall - last.1) - monotonic;
        *last = (now, wall);
        let limit = chrono::Duration::from_std(STEP).unwrap_or(chrono::Duration::MAX);
        (step.abs() > limit).then_some(step)
    }
}
