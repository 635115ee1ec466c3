//! The delivery loop every running node keeps: find executions whose
//! webhooks are due, claim them, send, record.
//!
//! Claiming is a compare-and-swap on the execution that moves its
//! `notify_due_at` [`CLAIM`] ahead: other nodes leave it alone meanwhile,
//! and if this node dies before recording, the claim lapses and any node
//! (this one, restarted, included) sends again. Receivers deduplicate by
//! `webhook-id`.
//!
//! Each execution's deliveries run in a task of their own under a slot
//! ([`super::slots`]): a pass never waits for slow targets, one tenant
//! holds at most a few slots, and a tenant whose slots are full is left out
//! of the next read, so another tenant's webhook is sent on its time.

use super::slots::{Breakers, Slots, target_of};
use super::{BACKOFF, GIVE_UP_AFTER, MAX_ATTEMPTS_KEPT, next_due, payload, plan, signature};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskhost_model::secrets::SecretKey;
use taskhost_model::{Delivery, DeliveryAttempt, DeliveryState, Execution};
use taskhost_net::Egress;
use taskhost_store::{Store, StoreError};
use tracing::Instrument;

/// How long a claim keeps other nodes off an execution's webhooks.
pub const CLAIM: Duration = Duration::from_secs(30);
/// How long one attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Executions looked at per pass.
const BATCH: u32 = 100;

/// Sends one node's share of the webhooks.
#[derive(Clone)]
pub struct Deliverer {
    pub store: Store,
    pub egress: Egress,
    /// Signs the deliveries; without it they fail (there is nothing to sign with).
    pub key: Option<SecretKey>,
    pub node_id: String,
    /// Told how each attempt ended: `delivered`, `retrying` or `failed`.
    pub on_attempt: Arc<dyn Fn(&'static str) + Send + Sync>,
    pub slots: Arc<Slots>,
    pub breakers: Arc<Breakers>,
}

/// How one attempt went.
struct Tried {
    attempt: DeliveryAttempt,
    delivered: bool,
    /// Retrying cannot help (the target is refused by the policy).
    final_failure: bool,
}

impl Deliverer {
    /// One pass: starts delivering, each in its own task under a slot, the
    /// executions whose webhooks are due now (of tenants with a free slot).
    /// Returns how many it started.
    pub async fn pass(&self) -> Result<usize, StoreError> {
        let Some(full) = self.slots.full() else {
            return Ok(0);
        };
        let now = self.store.now();
        let due = self.store.notify_due(now, BATCH, &full).await?;
        let mut started = 0;
        for e in due {
            let Some(slot) = self.slots.take(&e.tenant, &e.id) else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(error) = this.deliver(e.id).await {
                    tracing::warn!(%error, "webhook deliveries not recorded; they are sent again");
                }
            });
            started += 1;
        }
        Ok(started)
    }

    /// Claims, sends and records one execution's due deliveries.
    async fn deliver(&self, id: String) -> Result<bool, StoreError> {
        let now = self.store.now();
        let claim_until = taskhost_model::time::add_saturating(now, CLAIM);
        let claimed = self
            .store
            .modify_execution(&id, move |e| {
                if e.notify_due_at.is_none_or(|t| t > now) {
                    return false; // another node took it, or it is done
                }
                plan(e, now);
                e.notify_due_at = next_due(e).map(|_| claim_until);
                true
            })
            .await?;
        let Some(e) = claimed else { return Ok(false) };
        if e.notify_due_at.is_none() {
            return Ok(false); // no target wanted this end
        }
        // A target whose circuit is open is not tried: its delivery waits
        // until the circuit closes, with no attempt recorded.
        let (due, postponed) = self.open_targets(&e, now);
        // An execution's targets at once: the claim (30 s) outlasts one
        // attempt's timeout (10 s) however many targets it has.
        let results: Vec<(String, Tried)> = futures::future::join_all(
            due.into_iter()
                .map(|d| async { (d.id.clone(), self.attempt(&e, d).await) }),
        )
        .await;
        let ended = e.finished_at.unwrap_or(now);
        let tried: Vec<String> = results.iter().map(|(id, _)| id.clone()).collect();
        let recorded = self
            .store
            .modify_execution(&id, move |e| {
                let now = results
                    .last()
                    .map_or(now, |(_, t): &(String, Tried)| t.attempt.at);
                for (delivery, tried) in &results {
                    if let Some(d) = e.deliveries.iter_mut().find(|d| d.id == *delivery) {
                        record(d, tried, ended, now);
                    }
                }
                for (delivery, until) in &postponed {
                    let d = e.deliveries.iter_mut().find(|d| d.id == *delivery);
                    if let Some(d) = d.filter(|d| d.state == DeliveryState::Pending) {
                        d.next_at = Some(*until);
                    }
                }
                // Unless another node claimed it meanwhile (ours lapsed):
                // then its claim stands, and its own record sets the next time.
                if e.notify_due_at == Some(claim_until) {
                    e.notify_due_at = next_due(e);
                }
                true
            })
            .await?;
        for d in recorded.iter().flat_map(|e| &e.deliveries) {
            if tried.contains(&d.id) {
                (self.on_attempt)(match d.state {
                    DeliveryState::Delivered => "delivered",
                    DeliveryState::Failed => "failed",
                    DeliveryState::Pending => "retrying",
                });
            }
        }
        Ok(true)
    }

    /// The due deliveries of `e` to try now, and those whose target's
    /// circuit is open, with when it closes.
    fn open_targets<'e>(
        &self,
        e: &'e Execution,
        now: DateTime<Utc>,
    ) -> (Vec<&'e Delivery>, Vec<(String, DateTime<Utc>)>) {
        let mut due = Vec::new();
        let mut postponed = Vec::new();
        for d in e.deliveries.iter().filter(|d| is_due(d, now)) {
            let target = reqwest::Url::parse(&d.url).ok().map(|u| target_of(&u));
            match target.and_then(|t| self.breakers.open_until(&t)) {
                Some(until) => {
                    let wait = until.saturating_duration_since(Instant::now());
                    postponed.push((
                        d.id.clone(),
                        taskhost_model::time::add_saturating(now, wait),
                    ));
                }
                None => due.push(d),
            }
        }
        (due, postponed)
    }

    /// Sends one delivery once.
    async fn attempt(&self, e: &Execution, d: &Delivery) -> Tried {
        let at = self.store.now();
        let started = Instant::now();
        let done = |status: Option<u16>, error: Option<String>, final_failure: bool| Tried {
            delivered: error.is_none(),
            final_failure,
            attempt: DeliveryAttempt {
                at,
                status,
                error,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                node: self.node_id.clone(),
            },
        };
        let Some(key) = &self.key else {
            return done(
                None,
                Some("this node has no key to sign webhooks with".into()),
                true,
            );
        };
        let url = match reqwest::Url::parse(&d.url) {
            Ok(url) => url,
            Err(e) => return done(None, Some(format!("invalid URL: {e}")), true),
        };
        if let Err(refusal) = self.egress.policy().check_url(&e.tenant, None, &url) {
            return done(None, Some(refusal.to_string()), true);
        }
        let target = target_of(&url);
        let body = payload(e, &d.event, at);
        let timestamp = at.timestamp();
        let signature = signature(&key.webhook_secret(&e.tenant), &d.id, timestamp, &body);
        // A span in the run's trace; the receiver gets its `traceparent`.
        let span = tracing::info_span!("webhook", execution = %e.id, delivery = %d.id,
            event = %d.event, status = tracing::field::Empty);
        if let Some(trace) = &e.trace {
            trace.parent(&span);
        }
        let mut traced = reqwest::header::HeaderMap::new();
        taskhost_net::trace::inject(&span, &mut traced);
        let sent = self
            .egress
            .client()
            .post(url)
            .headers(traced)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("taskhost-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .timeout(ATTEMPT_TIMEOUT)
            .body(body)
            .send()
            .instrument(span.clone())
            .await;
        if let Ok(response) = &sent {
            span.record("status", response.status().as_u16());
        }
        self.breakers.record(
            &target,
            sent.as_ref()
                .is_ok_and(|r| r.status().is_success() || r.status().is_client_error()),
        );
        match sent {
            Ok(response) if response.status().is_success() => {
                done(Some(response.status().as_u16()), None, false)
            }
            Ok(response) => {
                let status = response.status();
                let why = if status.is_redirection() {
                    format!("answered {status}; webhooks do not follow redirects")
                } else {
                    format!("answered {status}")
                };
                done(Some(status.as_u16()), Some(why), false)
            }
            Err(error) => {
                let refused = taskhost_net::egress::refusal_in(&error).is_some();
                done(None, Some(taskhost_net::egress::describe(&error)), refused)
            }
        }
    }
}

fn is_due(d: &Delivery, now: DateTime<Utc>) -> bool {
    d.state == DeliveryState::Pending && d.next_at.is_some_and(|t| t <= now)
}

/// Records an attempt on its delivery and decides what comes next.
fn record(d: &mut Delivery, tried: &Tried, ended: DateTime<Utc>, now: DateTime<Utc>) {
    if d.state != DeliveryState::Pending {
        return; // recorded already (a lapsed claim sent it twice)
    }
    if d.attempts.len() >= MAX_ATTEMPTS_KEPT {
        d.attempts.remove(1); // keep the first and the latest ones
    }
    d.attempts.push(tried.attempt.clone());
    let tries = d.attempts.len();
    let gave_up = taskhost_model::time::add_saturating(ended, GIVE_UP_AFTER) <= now;
    if tried.delivered {
        d.state = DeliveryState::Delivered;
        d.next_at = None;
    } else if tried.final_failure || gave_up {
        d.state = DeliveryState::Failed;
        d.next_at = None;
    } else {
        let wait = BACKOFF[(tries - 1).min(BACKOFF.len() - 1)];
        d.next_at = Some(taskhost_model::time::add_saturating(now, wait));
    }
}
