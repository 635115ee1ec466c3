//! Events sent to one workflow execution (`POST /v1/executions/{id}/events`):
//! kept in its inbox until a `wait-for-event` step takes one, and waking it
//! at once if it is suspended waiting for that event. An event sent to the
//! tenant (`POST /v1/events`, a hook) goes to every execution of the tenant
//! suspended waiting for it ([`Node::deliver_to_waiting`]).

use crate::Node;
use taskhost_model::event::Event;
use taskhost_model::workflow::{MAX_INBOX, MAX_INBOX_BYTES, inbox_has_room};
use taskhost_model::{Execution, ExecutionStatus};
use taskhost_store::{ExecutionFilter, PageRequest, StoreError};

/// What sending an event to an execution did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Kept in the inbox; `woke`: the execution waited for it and is due now.
    Kept { woke: bool },
    /// An event with this id was sent before: nothing changed.
    Duplicate,
}

/// Why an event was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no such execution")]
    NotFound,
    #[error("the execution has ended ({0}); it takes no more events")]
    Ended(&'static str),
    #[error(
        "the execution's events not taken yet are at their most ({MAX_INBOX} events, {MAX_INBOX_BYTES} bytes)"
    )]
    InboxFull,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Node {
    /// Sends `event` to `tenant`'s execution `id` (see the module docs).
    pub async fn send_to_execution(
        &self,
        tenant: &str,
        id: &str,
        event: Event,
    ) -> Result<Delivered, DeliveryError> {
        let store = &self.inner.store;
        let current = store
            .get_execution(tenant, id)
            .await?
            .ok_or(DeliveryError::NotFound)?;
        if current.status.is_final() {
            return Err(DeliveryError::Ended(current.status.as_str()));
        }
        if current.inbox.iter().any(|e| e.id == event.id) {
            return Ok(Delivered::Duplicate);
        }
        if !inbox_has_room(&current.inbox, &event) {
            return Err(DeliveryError::InboxFull);
        }
        match self.keep(id, &event).await? {
            Some(woke) => Ok(Delivered::Kept { woke }),
            // It changed meanwhile (ended, filled, or took this id): say how.
            None => Box::pin(self.send_to_execution(tenant, id, event)).await,
        }
    }

    /// Puts `event` in execution `id`'s inbox, making it due now if it is
    /// suspended waiting for it: whether it woke; `None` if the execution
    /// has ended, has no room, or holds an event of this id.
    async fn keep(&self, id: &str, event: &Event) -> Result<Option<bool>, StoreError> {
        let now = self.inner.store.now();
        let kept = event.clone();
        let updated = self
            .inner
            .store
            .modify_execution(id, move |e| {
                let room = inbox_has_room(&e.inbox, &kept);
                if e.status.is_final() || !room || e.inbox.iter().any(|x| x.id == kept.id) {
                    return false;
                }
                e.inbox.push(kept.clone());
                if e.status == ExecutionStatus::Queued && waits_for(e, &kept) {
                    e.due_at = now;
                }
                true
            })
            .await?;
        Ok(updated.map(|e| {
            let woke =
                e.status == ExecutionStatus::Queued && e.due_at == now && waits_for(&e, event);
            if woke {
                self.offer(&e);
            }
            woke
        }))
    }
}

impl Node {
    /// Sends the tenant's `event` to each of its executions suspended
    /// waiting for it (its name, and its data the wait's filter): the ids
    /// it woke. An execution that reaches its wait later does not see it.
    pub async fn deliver_to_waiting(&self, event: &Event) -> Result<Vec<String>, StoreError> {
        let filter = ExecutionFilter {
            status: Some(ExecutionStatus::Queued),
            waiting_for: Some(event.name.clone()),
            ..ExecutionFilter::default()
        };
        let (mut woke, mut cursor) = (Vec::new(), None);
        loop {
            let request = PageRequest {
                cursor: cursor.take(),
                limit: Some(taskhost_store::MAX_PAGE),
            };
            let store = &self.inner.store;
            let page = store
                .list_executions(&event.tenant, &filter, &request)
                .await?;
            // Listed just now (this tenant's): kept by one write each, with
            // no second read. An execution that ended, is full or took the
            // event meanwhile is left as it is.
            for e in page.items.iter().filter(|e| waits_for(e, event)) {
                match self.keep(&e.id, event).await? {
                    Some(true) => woke.push(e.id.clone()),
                    Some(false) => {}
                    None => {
                        tracing::debug!(execution = %e.id, event = %event.name, "not delivered: ended, full, or had it");
                    }
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(woke),
            }
        }
    }
}

fn waits_for(e: &Execution, event: &Event) -> bool {
    e.waiting.as_ref().is_some_and(|w| w.takes(event))
}
