//! What the store refuses or fails at: [`QueueError`].

use std::path::PathBuf;

use crate::DamagedRow;

/// What the store refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file could not be opened or set up (missing directory, permissions,
    /// a file system without WAL support…).
    #[error("cannot open database {path}: {detail}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The file is damaged, not SQLite, or another program's database; it
    /// was not modified.
    #[error(
        "database {path} is corrupt or not an fsed database: {detail}; it was not modified — \
         restore it from a backup or move it away"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said, or why the file is not ours.
        detail: String,
    },
    /// The file was written by a newer fsed; it was not modified.
    #[error(
        "database {path} has schema version {found}, newer than this fsed knows ({supported}); \
         it was not modified — run a newer fsed"
    )]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A stored row that is damaged (its checksum does not match its bytes, or a column no
    /// longer decodes): it is not served.
    #[error("stored {} {} is damaged: {}", .0.kind, .0.id, .0.reason)]
    Damaged(DamagedRow),
    /// No such sheet or lot.
    #[error("not found: {0}")]
    NotFound(String),
    /// A state change the state machine forbids.
    #[error("{subject}: cannot go from {from} to {to}")]
    InvalidTransition {
        /// Sheet or lot.
        subject: String,
        /// Current state.
        from: String,
        /// Asked state.
        to: String,
    },
    /// The change would break a uniqueness rule (a sheet number already used).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A value given or stored is not what the schema promises.
    #[error("invalid data: {0}")]
    Data(String),
    /// The participation a new sheet withholds no longer fits the caps: another sheet of the
    /// same beneficiary was committed after its history was read. Nothing was inserted; the
    /// sheet is to be priced again on the history as it is now.
    #[error("participation cap: {0}")]
    OverCap(String),
    /// The practitioner's idempotency key was already used with another request (its hash
    /// differs): nothing was inserted.
    #[error(
        "idempotency key {key:?} of practitioner {practitioner_id} was already used for another \
         request (sheet {sheet_id}): use a new key for a new request"
    )]
    IdempotencyKeyReused {
        /// The key.
        key: String,
        /// Its practitioner.
        practitioner_id: String,
        /// The sheet made with it first.
        sheet_id: i64,
    },
}
