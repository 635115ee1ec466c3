//! Idempotency keys on [`Store`] (see `IdempotencyStore`).

use super::{Store, StoreError};
use taskhost_model::IdempotencyRecord;

impl Store {
    /// Records the first use of `record`'s key, or returns the first record
    /// if the key is still in its window (then nothing is written).
    pub async fn idempotency_first(
        &self,
        record: &IdempotencyRecord,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.backend.idempotency_put(record, self.now()).await
    }
}
