//! The rows and states the store hands out, and the inputs it takes.

use std::collections::BTreeMap;
use std::str::FromStr;

use fse_formats::ack::{ArlStatus, Rejection};
use serde::Serialize;

use crate::{CompactTime, LotId, PractitionerId, SheetId, Stamp};

/// A stored state name that no state of this version carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state {0:?}")]
pub struct UnknownState(pub String);

macro_rules! states {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),* }

        impl $name {
            /// Every state, in life order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The stored (and serialized) name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s { $($text => Ok($name::$variant),)* _ => Err(UnknownState(s.to_string())) }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

states!(
    /// Where a sheet is in its life: accepted → in_lot → signed → sent (the
    /// broker confirmed it, or the spool file is durable) → acknowledged |
    /// rejected → paid | refused; cancelled, only while accepted.
    SheetState {
        /// Committed, not yet in a lot.
        Accepted => "accepted",
        /// In a closed lot waiting for its signature.
        InLot => "in_lot",
        /// Its lot is signed, waiting to be sent.
        Signed => "signed",
        /// Its lot was delivered (broker confirmed / spool file durable).
        Sent => "sent",
        /// The insurer's ARL accepted it.
        Acknowledged => "acknowledged",
        /// The insurer's ARL refused it (see `SheetRow::reason`).
        Rejected => "rejected",
        /// The insurer's payment return paid it.
        Paid => "paid",
        /// The insurer's payment return refused it.
        Refused => "refused",
        /// Cancelled by the practice before it went into a lot.
        Cancelled => "cancelled",
    }
);

states!(
    /// Where a lot is in its life: closed → signed → sent → acknowledged |
    /// rejected (an ARL may also come straight after signed).
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSheet {
    /// National id of the practitioner.
    pub practitioner_id: PractitionerId,
    /// Sheet number from `Queue::allocate_sheet_number`.
    pub number: u64,
    /// Destination organism.
    pub destination: String,
    /// Idempotency key of the create call, if the client gave one: unique per practitioner.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the request the key came with (`fse_formats::api::FseCreateParams::
    /// request_hash`): the same key with another request is refused
    /// ([`crate::QueueError::IdempotencyKeyReused`]). `None`: not compared.
    pub request_hash: Option<[u8; 32]>,
    /// DER of the sheet.
    pub der: Vec<u8>,
    /// Creation time of the sheet (stored `YYYYMMDDHHMMSSZ`).
    pub created_at: CompactTime,
    /// DER of the sheet's DRE, when the AMC pays the practitioner directly.
    pub dre: Option<Vec<u8>>,
    /// The beneficiary the participation history is kept under (`fse_formats::build::history_key`).
    pub beneficiary_key: String,
    /// Participation forfaitaire withheld by this sheet, per date of care; its professional is
    /// the sheet's practitioner.
    pub participation: Vec<Withheld>,
    /// Last day to send the sheet (`YYYYMMDD`), when it has one.
    pub deadline: Option<String>,
    /// The participation caps the sheet was priced under: the insert is refused
    /// (`QueueError::OverCap`) rather than let the beneficiary's withholding pass them.
    pub participation_caps: Option<ParticipationCaps>,
}

/// What one sheet withholds on one date of care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// Date of care, `YYYYMMDD`.
    pub care_date: String,
    /// Participations (acts that withheld something).
    pub acts: u32,
    /// Cents withheld.
    pub cents: u64,
}

/// One line of a beneficiary's participation history: what was withheld on one date of care
/// with one professional, summed over the sheets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfRecord {
    /// Date of care, `YYYYMMDD`.
    pub care_date: String,
    /// The professional (a sheet's practitioner); `None`: unknown (rows kept from sheets purged
    /// before schema 14), to be counted against every professional.
    pub professional: Option<String>,
    /// Participations; `None`: unknown for some row (written before schema 14), to be taken as
    /// a full day.
    pub acts: Option<u32>,
    /// Cents withheld.
    pub cents: u64,
}

/// The caps of the participation forfaitaire (`rules::Participation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticipationCaps {
    /// Participations per beneficiary, professional and day of care.
    pub per_day_per_professional: u32,
    /// Cents per beneficiary and calendar year, all professionals together.
    pub per_year_cents: u64,
}

/// A stored sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetRow {
    /// Store id (increasing with insertion).
    pub id: SheetId,
    /// Practitioner.
    pub practitioner_id: PractitionerId,
    /// Sheet number, per practitioner.
    pub number: u64,
    /// Destination organism.
    pub destination: String,
    /// State.
    pub state: SheetState,
    /// Lot, once in one.
    pub lot_id: Option<LotId>,
    /// DER: the sheet itself (the store keeps no other rendering of it).
    pub der: Vec<u8>,
    /// Why the insurer refused it (`CODE: reason`, several joined by `; `).
    pub reason: Option<String>,
    /// Creation time as given by the caller (stored `YYYYMMDDHHMMSSZ`).
    pub created_at: CompactTime,
    /// Last change.
    pub updated_at: Stamp,
}

/// A stored lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotRow {
    /// Lot id, `{practitioner_id}-{number:08}`.
    pub id: LotId,
    /// Practitioner.
    pub practitioner_id: PractitionerId,
    /// Lot number, per practitioner.
    pub number: u64,
    /// Destination organism.
    pub destination: String,
    /// State.
    pub state: LotState,
    /// Number of sheets.
    pub sheet_count: u64,
    /// The signed lot (DER), once signed.
    pub signed_der: Option<Vec<u8>>,
    /// Closing time as given to `Queue::close_lots`.
    pub closed_at: CompactTime,
    /// Last change.
    pub updated_at: Stamp,
}

/// A stored ARL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRow {
    /// The lot it answers.
    pub lot_id: LotId,
    /// Positive or negative.
    pub status: ArlStatus,
    /// The ARL as received (DER).
    pub der: Vec<u8>,
    /// Time of receipt as the insurer gave it.
    pub received_at: String,
    /// The insurer's reasons.
    pub rejections: Vec<Rejection>,
    /// When fsed recorded it.
    pub recorded_at: Stamp,
}

/// A sheet's payment return as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentRow {
    /// The sheet.
    pub sheet_id: SheetId,
    /// Its number.
    pub number: u64,
    /// The lot it came in.
    pub lot_id: LotId,
    /// Paid (with its amount) or refused (with its code and reason).
    #[serde(flatten)]
    pub outcome: fse_formats::ack::PaymentOutcome,
    /// The insurer that paid or refused.
    pub insurer: String,
    /// When the insurer issued the return, `YYYYMMDDHHMMSSZ`, as the insurer wrote it.
    pub issued_at: String,
    /// When fsed recorded it.
    pub recorded_at: Stamp,
}

/// What applying one payment return did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentsApplied {
    /// Sheets paid or refused now.
    pub applied: Vec<PaymentRow>,
    /// Sheets that already had their payment return: unchanged.
    pub duplicates: usize,
    /// Sheet numbers not payable: not in the lot, or not acknowledged (rejected, cancelled).
    pub ignored: Vec<(u64, String)>,
    /// Sheets of the lot not yet acknowledged (the ARL has not come yet): the return is not
    /// applied at all and must be offered again later.
    pub not_yet: bool,
}

/// Result of an insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// A new sheet.
    New(SheetRow),
    /// The sheet already created with this idempotency key; nothing was inserted.
    Existing(SheetRow),
}

impl Inserted {
    /// The sheet, new or existing.
    pub fn row(&self) -> &SheetRow {
        match self {
            Inserted::New(r) | Inserted::Existing(r) => r,
        }
    }
}

/// Result of applying an ARL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArlOutcome {
    /// Applied now.
    Applied,
    /// The lot already had its ARL: nothing changed.
    Duplicate,
}

/// Counts per state; every state is present, with 0 when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Sheets per state.
    pub sheets: BTreeMap<String, u64>,
    /// Lots per state.
    pub lots: BTreeMap<String, u64>,
    /// Returns (ARLs, payment returns) dead-lettered since the queue was made, per reason
    /// (only the reasons met).
    pub dead_letters: BTreeMap<String, u64>,
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    /// Event id (increasing).
    pub id: i64,
    /// Time.
    pub at: Stamp,
    /// Kind: `sheet.number`, `sheet.accepted`, `lot.closed`, `lot.signed`,
    /// `lot.sent`, `arl.positive`, `arl.negative`.
    pub kind: String,
    /// Practitioner (`sheet.number`), sheet id (`sheet.accepted`) or lot id.
    pub subject: String,
    /// Details (an object; its members depend on the kind).
    pub detail: serde_json::Value,
}

/// What one group commit did: each reservation's first number, then each sheet's outcome.
pub type GroupOutcome = (
    Vec<Result<u64, crate::QueueError>>,
    Vec<Result<Inserted, crate::QueueError>>,
);

/// A lot's change of state that may share a group commit with sheet inserts (one fsync for
/// all): what the batcher writes as lots are closed, signed and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupWrite {
    /// [`crate::Queue::close_lots`] (`full_only`: [`crate::Queue::close_full_lots`]).
    CloseLots {
        /// Only this practitioner's sheets, or everyone's.
        practitioner_id: Option<PractitionerId>,
        /// The most sheets a lot holds.
        max_sheets: usize,
        /// The lots' closing time.
        now: CompactTime,
        /// Close only full lots.
        full_only: bool,
    },
    /// [`crate::Queue::mark_lot_signed_with_dres`].
    LotSigned {
        /// The lot.
        lot_id: LotId,
        /// Its signed DER.
        signed_der: Vec<u8>,
        /// Its CMS SignedData.
        cms: Option<Vec<u8>>,
        /// Its DRE lots: AMC number, DER, number of DREs.
        dre_lots: Vec<(String, Vec<u8>, u64)>,
    },
    /// [`crate::Queue::mark_lot_sent`].
    LotSent {
        /// The lot.
        lot_id: LotId,
    },
}

/// What a [`GroupWrite`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupWritten {
    /// The lots closed.
    Closed(Vec<LotRow>),
    /// The lot is signed.
    Signed,
    /// Whether the lot changed (`false`: it was sent already).
    Sent(bool),
}

/// What one group commit with writes did: [`GroupOutcome`] and each write's outcome.
pub type GroupWritesOutcome = (GroupOutcome, Vec<Result<GroupWritten, crate::QueueError>>);

/// What waits to be sent, for self-diagnosis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Backlog {
    /// Sheets not sent yet (accepted, in a lot, signed).
    pub unsent: u64,
    /// When the oldest of them was created.
    pub oldest_created_at: Option<CompactTime>,
    /// The nearest sending deadline among them (`YYYYMMDD`).
    pub nearest_deadline: Option<String>,
    /// Time of the last event recorded: the clock was at least there.
    pub last_event_at: Option<Stamp>,
}

/// A sheet not sent yet whose sending deadline is near or past.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadlineAlarm {
    /// Store id.
    pub id: SheetId,
    /// Practitioner.
    pub practitioner_id: PractitionerId,
    /// Sheet number.
    pub number: u64,
    /// State (`accepted`, `in_lot` or `signed`).
    pub state: String,
    /// Its lot, once in one.
    pub lot_id: Option<LotId>,
    /// Last day to send (`YYYYMMDD`).
    pub deadline: String,
}

/// A lot sent whose ARL has not come within the ARL timeout: it is sent again by itself
/// (same bytes, same lot id) until its resends are used up, then waits for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArlAlarm {
    /// The lot.
    pub lot_id: LotId,
    /// Its practitioner.
    pub practitioner_id: PractitionerId,
    /// Its destination organism.
    pub destination: String,
    /// Its sheets.
    pub sheet_count: u64,
    /// When it was last sent (first sending or last resend).
    pub sent_at: Stamp,
    /// How many times it was sent again.
    pub resends: u32,
    /// Its resends are used up: fsed sends it no more; a person asks the insurer.
    pub given_up: bool,
}

/// Lots sent again because their ARL did not come, for `queue.stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResendStats {
    /// Resends made, over every lot stored.
    pub total: u64,
    /// Lots sent again at least once, still without an ARL, still being sent again.
    pub waiting: u64,
    /// Lots without an ARL whose resends are used up: a person must look.
    pub given_up: u64,
}
