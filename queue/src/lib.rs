//! `fse_queue`: the durable store of fsed, one SQLite file in WAL mode with
//! `synchronous=FULL`. It owns the schema and its migrations, the sheet and
//! lot state machines, the sheet and lot numbering, the ARLs and the event
//! log. Every state change is one `BEGIN IMMEDIATE` transaction together
//! with the event row that records it, committed (and, by
//! `synchronous=FULL`, on disk) before the call returns.
//!
//! A file that is not a sound fsed database (damaged, not SQLite, another
//! program's database, a newer schema) is reported and never written to.

mod acks;
mod checksum;
mod dre_lots;
mod durable;
mod error;
mod events;
mod integrity;
mod lots;
mod numbering;
mod open;
mod participation;
mod payments;
mod retention;
mod rows;
mod schema;
mod sheets;
mod stats;
mod types;

use std::time::Duration;

use rusqlite::Connection;

pub use durable::{HighWater, PractitionerMark};
pub use error::QueueError;
pub use events::stamp_ago;
pub use integrity::{
    check_file, dre_lot_checksum, lot_checksum, sheet_checksum, DamagedRow, FileCheck, VerifyReport,
};
pub use schema::APPLICATION_ID;
pub use types::{
    AckRow, ArlAlarm, ArlOutcome, Backlog, DeadlineAlarm, EventRow, GroupOutcome, GroupWrite,
    GroupWritesOutcome, GroupWritten, Inserted, LotRow, LotState, NewSheet, ParticipationCaps,
    PaymentRow, PaymentsApplied, PfRecord, ResendStats, SheetRow, SheetState, Stats, UnknownState,
    Withheld,
};

/// How long a call waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The store: one connection to the SQLite file.
pub struct Queue {
    conn: Connection,
}

#[cfg(test)]
mod integrity_tests;
#[cfg(test)]
mod tests;
