//! MongoDB driver errors, classified for the store: transient ones
//! ("not now": retry later) apart from the rest, and unique-index refusals.

use crate::StoreError;

/// The server's code for a write refused by a unique index.
pub(super) const DUPLICATE_KEY: i32 = 11000;

/// Server error codes that mean "not now": the server is stepping down,
/// shutting down, unreachable or overloaded, or a write lost a race.
const TRANSIENT_CODES: [i32; 14] = [
    6, 7, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 50,
];

/// A driver error, classified by its kind, labels and server code.
pub(super) fn db_err(e: mongodb::error::Error) -> StoreError {
    use mongodb::error::{ErrorKind, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR};
    let code = match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    };
    let transient = matches!(
        e.kind.as_ref(),
        ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown
    ) || e.contains_label(RETRYABLE_WRITE_ERROR)
        || e.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || code.is_some_and(|c| TRANSIENT_CODES.contains(&c));
    if transient {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Backend(Box::new(e))
    }
}

/// Whether a write was refused by a unique index (by the server's code).
pub(super) fn is_duplicate(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(failure) => failure
            .write_errors
            .iter()
            .flatten()
            .any(|w| w.code == DUPLICATE_KEY),
        _ => false,
    }
}
