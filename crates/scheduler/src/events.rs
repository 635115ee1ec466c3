//! Events into fires: [`Node::publish`] fires every schedule of the tenant
//! whose trigger names the event and whose filter its data matches.
//!
//! Each match is one fire through the intake's fire path, recorded under the
//! unique key (schedule, event id): it runs, or is recorded `skipped` (a
//! paused schedule, a quota, a policy the node refuses), and an event sent
//! again with the same id — a client's retry, a hook sender's redelivery, two
//! nodes receiving it at once — finds its fires recorded and makes nothing.

use super::Node;
use crate::intake::{Admission, Decision, IntakeError, Work};
use taskhost_model::event::{self, Event};
use taskhost_model::{Execution, Trigger};

/// What an event did to one schedule it matched.
#[derive(Debug, Clone)]
pub struct EventFire {
    pub schedule_id: String,
    /// Its fire's record: the execution that runs, or the `skipped` record.
    /// For an event that had fired this schedule before (same id): that
    /// record if it was received at the same instant (an idempotent
    /// retry), otherwise `None`.
    pub record: Option<Execution>,
    /// Whether the event had fired this schedule before.
    pub duplicate: bool,
}

impl Node {
    /// Fires the schedules `event` matches, one fire each, in schedule order.
    pub async fn publish(&self, event: &Event) -> Result<Vec<EventFire>, IntakeError> {
        let store = &self.inner.store;
        let mut schedules = store.event_schedules(&event.tenant, &event.name).await?;
        schedules.retain(|s| match &s.trigger {
            Trigger::Event {
                filter: Some(filter),
                ..
            } => event::matches(filter, &event.data),
            Trigger::Event { filter: None, .. } => true,
            _ => false,
        });
        schedules.sort_by(|a, b| a.id.cmp(&b.id));
        let node = self.inner.config.node_id.as_str();
        let work = schedules
            .iter()
            .map(|s| Work::event(s, event, node))
            .collect();
        let decided = self.intake(work, Admission::Fires).await?;
        let mut fires = Vec::with_capacity(decided.len());
        for (s, d) in schedules.into_iter().zip(decided) {
            let (record, duplicate) = match d {
                Decision::Run(e) | Decision::Skip(e) => (Some(e), false),
                Decision::Theirs => (self.first_fire(&s.id, event).await?, true),
            };
            fires.push(EventFire {
                schedule_id: s.id,
                record,
                duplicate,
            });
        }
        Ok(fires)
    }

    /// The record `event` made for schedule `id` before, if it was
    /// received at the same instant.
    async fn first_fire(&self, id: &str, event: &Event) -> Result<Option<Execution>, IntakeError> {
        let store = &self.inner.store;
        let found = store
            .fire_record(&event.tenant, id, event.received_at)
            .await?;
        let same = |e: &Execution| {
            let fired = e.fire.as_ref().and_then(|f| f.event.as_ref());
            fired.is_some_and(|r| r.id == event.id)
        };
        Ok(found.filter(same))
    }
}
