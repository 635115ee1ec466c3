//! Concurrency-key and rate-limit-key slots on MongoDB (see
//! `taskhost_model::flow`).
//!
//! A key with limit `n` has up to `n` slot documents (`_id`: tenant, key and
//! slot number), each naming the execution that holds it. A run takes a slot
//! before it is claimed, by compare-and-swap on the slot's old holder (so
//! two claims cannot take one slot), then is claimed; if the claim fails
//! (another node claimed it), the slot is given back.
//!
//! A slot is held while its execution runs, or ended after the instant of
//! the claim that asks (whose start must come after that end), or — for
//! [`PENDING`] after it was taken — while its execution is still queued (the
//! claim that took it is under way). So a run that ended or was given back
//! frees its slot with no other write, and a run's start (its claim) comes
//! after its slot was free. A run whose node died holds its slot until a
//! reaper re-queues it (its lease expired): a lapsed lease alone does not
//! free the slot, since a node whose claim came back late may still start
//! that run (it confirms its lease first, and the re-queue takes it away).
//!
//! A rate-limit key with limit `n` per period has `n` slot documents, each
//! remembering the last start it allowed; a start takes a slot whose last
//! start is a period old, by compare-and-swap on that time. So any period
//! holds at most `n` starts of the key.

use super::{MongoBackend, db_err, is_duplicate};
use crate::backend::{ClaimOrder, Result};
use crate::traits::ExecutionStore;
use chrono::{DateTime, Utc};
use mongodb::bson::{Document, doc};
use taskhost_model::Execution;

/// How long a taken slot waits for its run's claim.
const PENDING: chrono::Duration = chrono::Duration::seconds(10);

impl MongoBackend {
    /// Claims `e` (queued, due, with a concurrency or rate-limit key) if
    /// its keys allow: takes a slot of each, then the claim; gives the slots
    /// back if the claim fails (another node claimed it).
    pub(super) async fn claim_keyed(
        &self,
        e: &Execution,
        order: &ClaimOrder,
    ) -> Result<Option<Execution>> {
        let slot = match e
            .policy
            .concurrency
            .as_ref()
            .is_some_and(|c| c.key.is_some())
        {
            true => match self.slot_take(e, order.now).await? {
                Some(slot) => Some(slot),
                None => return Ok(None),
            },
            false => None,
        };
        let start = match e
            .policy
            .rate_limit
            .as_ref()
            .is_some_and(|r| r.key.is_some())
        {
            true => match self.start_take(e, order.now).await {
                Ok(Some(start)) => Some(start),
                taken => {
                    self.give_back(e, slot.as_deref(), None, order.now).await?;
                    return taken.map(|_| None);
                }
            },
            false => None,
        };
        let claim_order = order.clone();
        let claimed = self
            .execution_update(
                &e.id,
                Box::new(move |e| crate::executions::claim(e, &claim_order)),
            )
            .await;
        if !matches!(claimed, Ok(Some(_))) {
            self.give_back(e, slot.as_deref(), start, order.now).await?;
        }
        claimed
    }

    /// Gives back what a claim that did not happen took: its concurrency
    /// slot, and its start of a rate-limit slot (whose last start was `prev`).
    async fn give_back(
        &self,
        e: &Execution,
        slot: Option<&str>,
        start: Option<(String, i64)>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if let Some(slot) = slot {
            self.coll("slots")
                .update_one(
                    doc! { "_id": slot, "holder": &e.id },
                    doc! { "$set": { "holder": "", "pending_until": 0_i64 } },
                )
                .await
                .map_err(db_err)?;
        }
        if let Some((id, prev)) = start {
            self.coll("rate_slots")
                .update_one(
                    doc! { "_id": id, "last": now.timestamp_millis() },
                    doc! { "$set": { "last": prev } },
                )
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    /// Takes a start of `e`'s rate-limit key: one of its `limit` slots
    /// whose last start is at least `per` before `now`, by compare-and-swap
    /// on that last start. The slot and its previous last start, or `None`.
    async fn start_take(&self, e: &Execution, now: DateTime<Utc>) -> Result<Option<(String, i64)>> {
        let Some((key, limit, per)) = e
            .policy
            .rate_limit
            .as_ref()
            .and_then(|r| Some((r.key.as_deref()?, r.limit, r.per.as_millis() as i64)))
        else {
            return Ok(None);
        };
        let slots = self.coll("rate_slots");
        let now_ms = now.timestamp_millis();
        for n in 0..limit {
            let id = format!("{}\u{1f}{key}\u{1f}{n}", e.tenant);
            let Some(slot) = slots.find_one(doc! { "_id": &id }).await.map_err(db_err)? else {
                match slots.insert_one(doc! { "_id": &id, "last": now_ms }).await {
                    Ok(_) => return Ok(Some((id, 0))),
                    Err(err) if is_duplicate(&err) => continue,
                    Err(err) => return Err(db_err(err)),
                }
            };
            let last = slot.get_i64("last").unwrap_or(0);
            if last > now_ms.saturating_sub(per) {
                continue;
            }
            let taken = slots
                .update_one(
                    doc! { "_id": &id, "last": last },
                    doc! { "$set": { "last": now_ms } },
                )
                .await
                .map_err(db_err)?;
            if taken.modified_count == 1 {
                return Ok(Some((id, last)));
            }
        }
        Ok(None)
    }

    /// Takes a free slot of `e`'s key for it; its id, or `None` if every
    /// slot is held.
    async fn slot_take(&self, e: &Execution, now: DateTime<Utc>) -> Result<Option<String>> {
        let Some((key, limit)) = e
            .policy
            .concurrency
            .as_ref()
            .and_then(|c| Some((c.key.as_deref()?, c.limit)))
        else {
            return Ok(None);
        };
        let slots = self.coll("slots");
        let pending_until = (now + PENDING).timestamp_millis();
        for n in 0..limit {
            let id = format!("{}\u{1f}{key}\u{1f}{n}", e.tenant);
            let mine = doc! { "_id": &id, "holder": &e.id, "pending_until": pending_until };
            let Some(slot) = slots.find_one(doc! { "_id": &id }).await.map_err(db_err)? else {
                match slots.insert_one(mine).await {
                    Ok(_) => return Ok(Some(id)),
                    Err(err) if is_duplicate(&err) => continue,
                    Err(err) => return Err(db_err(err)),
                }
            };
            if self.held(&slot, now).await? {
                continue;
            }
            let holder = slot.get_str("holder").unwrap_or_default();
            let taken = slots
                .replace_one(doc! { "_id": &id, "holder": holder }, mine)
                .await
                .map_err(db_err)?;
            if taken.modified_count == 1 {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Whether a slot is held at `now` (see the module docs).
    async fn held(&self, slot: &Document, now: DateTime<Utc>) -> Result<bool> {
        let holder = slot.get_str("holder").unwrap_or_default();
        if holder.is_empty() {
            return Ok(false);
        }
        let now_ms = now.timestamp_millis();
        let running = doc! { "status": "running" };
        // Ended after this claim's instant: its end must come before our start.
        let ended = doc! { "finished_at": { "$gt": now_ms } };
        let mut holds = vec![running, ended];
        if slot.get_i64("pending_until").unwrap_or(0) > now_ms {
            holds.push(doc! { "status": "queued" });
        }
        let filter = doc! { "_id": holder, "$or": holds };
        let found = self
            .coll("executions")
            .count_documents(filter)
            .limit(1)
            .await
            .map_err(db_err)?;
        Ok(found > 0)
    }
}
