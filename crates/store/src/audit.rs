//! The audit log on [`Store`] (see `AuditStore`).

use super::{Store, StoreError};

impl Store {
    /// Appends a record to the audit log.
    pub async fn audit(
        &self,
        record: &taskhost_model::audit::AuditRecord,
    ) -> Result<(), StoreError> {
        self.backend.audit_append(record, self.now()).await
    }

    /// Audit records newest first, of `tenant` or of every tenant.
    pub async fn audit_records(
        &self,
        tenant: Option<&str>,
        request: &crate::PageRequest,
    ) -> Result<crate::Page<taskhost_model::audit::AuditRecord>, StoreError> {
        let query = request.query();
        let items = self.backend.audit_list(tenant, &query).await?;
        Ok(crate::page(items, &query, |r| &r.id))
    }
}
