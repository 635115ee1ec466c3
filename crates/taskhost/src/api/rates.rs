//! The API request-rate quota: a token bucket (GCRA, from `governor`) per
//! tenant, with the tenant's `requests_per_second` and `request_burst`.
//! Checked when a request's token has been verified, so only real tenants get
//! a bucket; a request over the rate gets 429 with `Retry-After`.

use super::error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use taskhost_model::error::ErrorCode;
use taskhost_model::quota::QuotaConfig;

/// Per-tenant request rates.
pub struct RequestRates {
    quotas: QuotaConfig,
    buckets: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    clock: DefaultClock,
}

impl RequestRates {
    pub fn new(quotas: QuotaConfig) -> Self {
        RequestRates {
            quotas,
            buckets: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    fn bucket(&self, tenant: &str) -> Arc<DefaultDirectRateLimiter> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get(tenant) {
            return bucket.clone();
        }
        let q = self.quotas.for_tenant(tenant);
        let rate = NonZeroU32::new(q.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(q.request_burst.max(q.requests_per_second)).unwrap_or(rate);
        let bucket = Arc::new(RateLimiter::direct(
            Quota::per_second(rate).allow_burst(burst),
        ));
        buckets.insert(tenant.to_owned(), bucket.clone());
        bucket
    }

    /// Takes one request from `tenant`'s bucket, or says when to come back.
    pub fn admit(&self, tenant: &str) -> Result<(), ApiError> {
        match self.bucket(tenant).check() {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let q = self.quotas.for_tenant(tenant);
                Err(ApiError::too_many_requests(
                    ErrorCode::RateLimited,
                    format!(
                        "quota requests_per_second is {} (burst {}); slow down",
                        q.requests_per_second, q.request_burst
                    ),
                    wait.as_secs() + 1,
                ))
            }
        }
    }
}
