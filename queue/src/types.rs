//! The rows and states the store hands out.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Serialize;

macro_rules! states {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),* }

        impl $name {
            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($text => Ok($name::$variant),)* _ => Err(()) }
            }
        }
    };
}

states!(
    /// Where a sheet is in its life.
    SheetState {
        /// Committed, not yet in a lot.
        Accepted => "accepted",
        /// In a closed lot waiting for its signature.
        InLot => "in_lot",
        /// Its lot is signed.
        Signed => "signed",
        /// Its lot was delivered (broker confirmed / spool file durable).
        Sent => "sent",
        /// Positive ARL.
        Acknowledged => "acknowledged",
        /// Negative ARL.
        Rejected => "rejected",
    }
);

states!(
    /// Where a lot is in its life.
    LotState {
        /// Closed, waiting for the CPS signature.
        Closed => "closed",
        /// Signed, waiting to be sent.
        Signed => "signed",
        /// Delivered.
        Sent => "sent",
        /// Positive ARL.
        Acknowledged => "acknowledged",
        /// Negative ARL.
        Rejected => "rejected",
    }
);

/// A sheet to insert.
#[derive(Debug, Clone)]
pub struct NewSheet {
    /// National id of the practitioner.
    pub practitioner_id: String,
    /// Sheet number from `allocate_sheet_number`.
    pub number: u64,
    /// Destination organism.
    pub destination: String,
    /// Idempotency key of the create call.
    pub idempotency_key: Option<String>,
    /// DER of the sheet.
    pub der: Vec<u8>,
    /// JSON rendering of the sheet.
    pub json: String,
    /// Creation time of the sheet (`YYYYMMDDHHMMSSZ`).
    pub created_at: String,
}

/// A stored sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetRow {
    /// Store id.
    pub id: i64,
    /// Practitioner.
    pub practitioner_id: String,
    /// Sheet number.
    pub number: u64,
    /// Destination organism.
    pub destination: String,
    /// State.
    pub state: SheetState,
    /// Lot, once in one.
    pub lot_id: Option<String>,
    /// DER.
    pub der: Vec<u8>,
    /// JSON rendering.
    pub json: String,
    /// Rejection reason.
    pub reason: Option<String>,
    /// Creation time (`YYYYMMDDHHMMSSZ`).
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

/// A stored lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotRow {
    /// Lot id.
    pub id: String,
    /// Practitioner.
    pub practitioner_id: String,
    /// Lot number, per practitioner.
    pub number: u64,
    /// Destination organism.
    pub destination: String,
    /// State.
    pub state: LotState,
    /// Number of sheets.
    pub sheet_count: u64,
    /// The signed lot, once signed.
    pub signed_der: Option<Vec<u8>>,
    /// Closing time.
    pub closed_at: String,
    /// Last change.
    pub updated_at: String,
}

/// Result of an insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// A new sheet.
    New(SheetRow),
    /// The sheet already created with this idempotency key.
    Existing(SheetRow),
}

/// Result of applying an ARL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArlOutcome {
    /// Applied now.
    Applied,
    /// Already applied before: nothing changed.
    Duplicate,
}

/// Counts per state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Sheets per state.
    pub sheets: BTreeMap<String, u64>,
    /// Lots per state.
    pub lots: BTreeMap<String, u64>,
}

/// One event of the log.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    /// Event id.
    pub id: i64,
    /// Time.
    pub at: String,
    /// Kind (`sheet.accepted`, `lot.signed`, …).
    pub kind: String,
    /// Sheet or lot concerned.
    pub subject: String,
    /// JSON details.
    pub detail: String,
}
