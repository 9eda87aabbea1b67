//! The terms a care sheet (`fse`) and its pricing (`rules`) share: the care path, the kind of
//! cover, the tiers payant and the amounts. A leaf: it depends on neither.

use serde::{Deserialize, Serialize};

/// The coordinated care path of the act (parcours de soins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CarePath {
    /// The patient's médecin traitant, or sent by him.
    Treating,
    /// A specialty in direct access (gynaecology, ophthalmology, psychiatry under 26 …).
    DirectAccess,
    /// Emergency, or away from home.
    Emergency,
    /// Out of the care path: lower rate for doctors.
    OutOfPath,
    /// No care path for this profession (auxiliaries on prescription, psychologists).
    NotApplicable,
}

/// The insurance the care falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverKind {
    /// Maladie: the general case.
    Maladie,
    /// Maternity insurance: 100 %, no participation.
    Maternite,
    /// Work accident or occupational disease: 100 %, no participation.
    AtMp,
}

/// Who pays the practitioner directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TiersPayant {
    /// The AMO pays its share to the practitioner.
    pub amo: bool,
    /// The AMC pays its share to the practitioner.
    pub amc: bool,
    /// AMC number (from the Vitale card), when there is one.
    #[serde(default)]
    pub amc_number: Option<String>,
}

/// The computed amounts of a sheet, in cents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amounts {
    /// Total charged: bases plus excess fees.
    pub total_cents: u64,
    /// Reimbursement base.
    pub base_cents: u64,
    /// Excess fees.
    pub excess_cents: u64,
    /// What the AMO pays, participation forfaitaire deducted.
    pub amo_cents: u64,
    /// Participation forfaitaire withheld.
    pub pf_cents: u64,
    /// What the AMC (or the CSS) pays.
    pub amc_cents: u64,
    /// What the patient bears after both insurers.
    pub patient_cents: u64,
    /// What the patient pays the practitioner today (tiers payant deducted).
    pub due_cents: u64,
}
