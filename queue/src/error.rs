//! What the store refuses or fails at: [`QueueError`].

use std::path::PathBuf;

use crate::{DamagedRow, PractitionerId, SheetId};

/// What went wrong opening, checking or copying a file: SQLite's or the system's error, kept
/// as the source, or a text of the store's own. It displays as the error it holds.
#[derive(Debug, thiserror::Error)]
pub enum Detail {
    /// SQLite's error.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The system's error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The system's error at one step (`{step}: {source}`).
    #[error("{step}: {source}")]
    IoAt {
        /// What was being done.
        step: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store's own error at an earlier step.
    #[error(transparent)]
    Store(Box<QueueError>),
    /// What the store found, in words.
    #[error("{0}")]
    Text(String),
}

impl From<String> for Detail {
    fn from(text: String) -> Detail {
        Detail::Text(text)
    }
}

impl From<QueueError> for Detail {
    fn from(e: QueueError) -> Detail {
        Detail::Store(Box::new(e))
    }
}

impl From<&str> for Detail {
    fn from(text: &str) -> Detail {
        Detail::Text(text.to_owned())
    }
}

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
        #[source]
        detail: Detail,
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
        #[source]
        detail: Detail,
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
    /// A value the store writes or reads as JSON that would not serialize or parse.
    #[error("invalid data: {0}")]
    Json(#[from] serde_json::Error),
    /// A value given or stored that does not decode (`{what}: {source}`).
    #[error("invalid data: {what}: {source}")]
    Decode {
        /// What was decoded.
        what: String,
        /// Why it does not decode.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
        practitioner_id: PractitionerId,
        /// The sheet made with it first.
        sheet_id: SheetId,
    },
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_error_keeps_its_source_and_says_what_it_said() {
        let sqlite = rusqlite::Connection::open_in_memory()
            .unwrap()
            .execute("SELECT nothing FROM nowhere", [])
            .unwrap_err();
        let said = sqlite.to_string();
        let e = QueueError::Open {
            path: PathBuf::from("/x/q.db"),
            detail: sqlite.into(),
        };
        assert_eq!(
            e.to_string(),
            format!("cannot open database /x/q.db: {said}")
        );
        let source = e.source().unwrap();
        assert!(
            matches!(source.downcast_ref::<Detail>(), Some(Detail::Sqlite(_))),
            "{source:?}"
        );

        let json = serde_json::from_str::<u8>("x").unwrap_err();
        let said = json.to_string();
        let e = QueueError::from(json);
        assert_eq!(e.to_string(), format!("invalid data: {said}"));
        assert!(e.source().unwrap().is::<serde_json::Error>());

        let io = std::io::Error::other("disk gone");
        let e = QueueError::Open {
            path: PathBuf::from("/x/copy.db"),
            detail: Detail::IoAt {
                step: "cannot sync the copy".into(),
                source: io,
            },
        };
        assert_eq!(
            e.to_string(),
            "cannot open database /x/copy.db: cannot sync the copy: disk gone"
        );
        let step = e.source().unwrap();
        assert!(step.source().unwrap().is::<std::io::Error>());
    }
}
