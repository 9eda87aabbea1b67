//! Pricing rules: pure functions of (acts, beneficiary situation, tables,
//! history) to amounts in integer cents, never floats.
//!
//! The tables are a versioned data file, `formats/tables/tariffs.toml`
//! (built in; each price cites its source): date-effective prices per act
//! code, AMO rates per act family in and out of the care path, the
//! participation forfaitaire with its caps, and the flat participation on
//! heavy acts. Covers paid at 100 % (ALD care, maternity, AT/MP), the
//! exemptions from the participation (minors, CSS, maternity, AT/MP) and the
//! AMC share (the ticket modérateur, when the patient has an AMC or the CSS)
//! are rules of this module, documented where they are applied.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::care::{Amounts, TiersPayant};

mod price;
mod tables;
#[cfg(test)]
mod tests;

pub use crate::care::{CarePath, CoverKind};
pub use crate::verify::{check_shares, ShareError};
pub use price::price;
pub use tables::*;

/// One act to price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActLine {
    /// Code.
    pub code: String,
    /// Coefficient in hundredths (100 = 1).
    pub coefficient: u32,
    /// Quantity.
    pub quantity: u32,
    /// Date of care.
    pub date: NaiveDate,
    /// Excess fee (dépassement) above the base, cents.
    pub excess_cents: u64,
    /// Modifier codes (majorations).
    pub modifiers: Vec<String>,
}

/// What pricing needs to know of the beneficiary and the sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Birth date.
    pub birth_date: NaiveDate,
    /// Cover.
    pub cover: CoverKind,
    /// The acts are care for the beneficiary's ALD (100 %, no ticket modérateur).
    pub ald: bool,
    /// The beneficiary has the complémentaire santé solidaire.
    pub css: bool,
    /// Care path.
    pub care_path: CarePath,
    /// The beneficiary has an AMC (it pays the ticket modérateur).
    pub amc: bool,
}

/// Participation forfaitaire already withheld for this beneficiary on other sheets (the queue's
/// history), for one date of care and the professional of the sheet being priced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PfHistory {
    /// Participations on the date of care with the same professional (a number, capped by
    /// [`Participation::per_day_per_professional`]).
    pub same_day_with_professional: u32,
    /// Cents withheld in the calendar year of the date of care, by every professional.
    pub same_year_cents: u64,
}

/// The participation forfaitaire one sheet withholds on one date of care: what the queue keeps
/// of it, with the sheet's professional, as the beneficiary's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withheld {
    /// Date of care.
    pub date: NaiveDate,
    /// Participations (acts that withheld something).
    pub acts: u32,
    /// Cents withheld.
    pub cents: u64,
}

/// One line of a beneficiary's participation history: what was withheld on one date of care
/// by one professional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfEntry {
    /// Date of care.
    pub date: NaiveDate,
    /// The professional's national id; `None`: unknown (a row from before fsed kept it),
    /// counted against every professional's day.
    pub professional: Option<String>,
    /// Participations; `None`: unknown (a row from before fsed counted them), taken as the
    /// whole day's cap.
    pub acts: Option<u32>,
    /// Cents withheld.
    pub cents: u64,
}

/// One priced act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedAct {
    /// Price of coefficient 1 on that date.
    pub unit_cents: u64,
    /// Reimbursement base: unit × coefficient × quantity.
    pub base_cents: u64,
    /// AMO rate in percent.
    pub rate: u8,
    /// AMO share before the participation forfaitaire.
    pub amo_cents: u64,
    /// Participation forfaitaire withheld on this act.
    pub pf_cents: u64,
    /// The flat heavy-act participation replaced the ticket modérateur.
    pub heavy_flat: bool,
}

/// A priced sheet, in cents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Priced {
    /// Per act.
    pub acts: Vec<PricedAct>,
    /// Total charged: bases plus excess fees.
    pub total_cents: u64,
    /// Sum of the bases.
    pub base_cents: u64,
    /// Sum of the excess fees.
    pub excess_cents: u64,
    /// AMO share, participation deducted.
    pub amo_cents: u64,
    /// Participation forfaitaire withheld.
    pub pf_cents: u64,
    /// AMC share (or the CSS's).
    pub amc_cents: u64,
    /// What remains for the patient after both insurers.
    pub patient_cents: u64,
    /// Version of the tables used.
    pub tables_version: String,
}

/// Why a sheet cannot be priced. Each has a stable code and names its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// No tariff for this code at this date.
    #[error("unknown act {code} on {date}")]
    UnknownAct {
        /// Index of the act.
        index: usize,
        /// The code.
        code: String,
        /// The date.
        date: NaiveDate,
    },
    /// A code the table knows, on a date before its first price.
    #[error("no price for {code} on {date}: the table starts on {first}")]
    TariffDateUnknown {
        /// Index of the act.
        index: usize,
        /// The code.
        code: String,
        /// The date of care.
        date: NaiveDate,
        /// The act's first priced day.
        first: NaiveDate,
    },
    /// The practitioner's profession may not bill this act.
    #[error("act {code} may not be billed by profession {profession}")]
    ProfessionNotAllowed {
        /// Index of the act.
        index: usize,
        /// The code.
        code: String,
        /// Profession code.
        profession: String,
    },
    /// A modifier the table does not know, or not for this profession.
    #[error("act {index}: modifier {code} unknown or not for profession {profession}")]
    UnknownModifier {
        /// Index of the act.
        index: usize,
        /// Position of the modifier on the act.
        position: usize,
        /// The code.
        code: String,
        /// Profession code.
        profession: String,
    },
    /// Quantity or coefficient zero, or an amount out of range.
    #[error("act {index}: {reason}")]
    BadAct {
        /// Index of the act.
        index: usize,
        /// Field within the act.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl RuleError {
    /// Stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            RuleError::UnknownAct { .. } => "UNKNOWN_ACT",
            RuleError::TariffDateUnknown { .. } => "TARIFF_DATE_UNKNOWN",
            RuleError::ProfessionNotAllowed { .. } => "ACT_NOT_ALLOWED_FOR_PROFESSION",
            RuleError::UnknownModifier { .. } => "UNKNOWN_MODIFIER",
            RuleError::BadAct { .. } => "BAD_ACT",
        }
    }

    /// The field at fault, as the API names it.
    pub fn field(&self) -> String {
        match self {
            RuleError::UnknownAct { index, .. } | RuleError::ProfessionNotAllowed { index, .. } => {
                format!("acts[{index}].code")
            }
            RuleError::TariffDateUnknown { index, .. } => format!("acts[{index}].date"),
            RuleError::UnknownModifier {
                index, position, ..
            } => format!("acts[{index}].modifiers[{position}]"),
            RuleError::BadAct { index, field, .. } => format!("acts[{index}].{field}"),
        }
    }
}

/// The largest excess fee one act line may carry: 10 000 €.
pub const MAX_EXCESS_CENTS: u64 = 1_000_000;

/// Age in whole years on `date`.
pub fn age_on(birth: NaiveDate, date: NaiveDate) -> i32 {
    date.years_since(birth).map_or(0, |y| y as i32)
}

/// `a × b / 100`, rounded to the nearest cent (half up), without overflow.
fn percent(a: u64, b: u64) -> u64 {
    ((u128::from(a) * u128::from(b) + 50) / 100).min(u128::from(u64::MAX)) as u64
}

impl Priced {
    /// The sheet's amounts: what each payer bears, and what the patient pays the practitioner
    /// today once the tiers payant of each insurer is deducted.
    pub fn amounts(&self, tiers_payant: &TiersPayant) -> Amounts {
        let mut due = self.total_cents;
        if tiers_payant.amo {
            due -= self.amo_cents;
        }
        if tiers_payant.amc {
            due -= self.amc_cents;
        }
        Amounts {
            total_cents: self.total_cents,
            base_cents: self.base_cents,
            excess_cents: self.excess_cents,
            amo_cents: self.amo_cents,
            pf_cents: self.pf_cents,
            amc_cents: self.amc_cents,
            patient_cents: self.patient_cents,
            due_cents: due,
        }
    }
}
