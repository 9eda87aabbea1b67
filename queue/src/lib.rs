//! `fse_queue`: the durable store of fsed, one SQLite file in WAL mode with
//! `synchronous=FULL`. It owns the schema and its migrations, the sheet and
//! lot state machines, the sheet and lot numbering, the ARLs and the event
//! log. Every state change is one `BEGIN IMMEDIATE` transaction together
//! with the event row that records it, committed (and, by
//! `synchronous=FULL`, on disk) before the call returns.
//!
//! The store speaks in types, not text: ids are [`SheetId`], [`LotId`] and
//! [`PractitionerId`]; times are [`Stamp`] (a row's change) and [`CompactTime`] (a sheet's or
//! a lot's own time), made into SQLite's text only where a row is written or read. It hands
//! out DER and rows, never JSON text: a sheet is its DER ([`SheetRow::der`]), which the API
//! edge renders. The file keeps no JSON of a sheet either (migration 13 dropped the column;
//! the checksums of migration 15 cover the DER and the DRE only), so nothing was left to
//! migrate. Event details, stored as JSON text, are read back as values.
//!
//! A file that is not a sound fsed database (damaged, not SQLite, another
//! program's database, a newer schema) is reported and never written to.

mod acks;
mod app_tokens;
mod attachments;
mod checksum;
mod dre_lots;
mod durable;
mod error;
mod events;
mod ids;
mod integrity;
mod lots;
mod numbering;
mod open;
mod participation;
mod payments;
mod retention;
mod rights;
mod rows;
mod schema;
mod sheets;
mod stats;
mod status;
mod time;
mod types;

use std::time::Duration;

use rusqlite::Connection;

pub use attachments::{
    AttachmentArl, AttachmentLotToSend, AttachmentRow, NewAttachment, StoredAttachment,
};
pub use durable::{HighWater, PractitionerMark};
pub use error::{Detail, QueueError};
pub use events::stamp_ago;
pub use ids::{LotId, PractitionerId, SheetId};
pub use integrity::{
    attachment_checksum, check_file, dre_lot_checksum, lot_checksum, sheet_checksum, DamagedRow,
    FileCheck, VerifyReport,
};
pub use rights::{RightsEntry, RightsSourceKind};
pub use schema::APPLICATION_ID;
pub use status::{LotSending, SheetTrail};
pub use time::{BadTime, CompactTime, Stamp, TimeText};
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
