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

use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::fse::{Amounts, TiersPayant};

/// The built-in tariff table, TOML.
pub const BUILTIN_TABLES: &str = include_str!("../tables/tariffs.toml");

/// Families of acts, each with its AMO rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Doctors' consultations and visits.
    Consultation,
    /// Doctors' technical acts (CCAM).
    Technique,
    /// Nurses, physiotherapists.
    Auxiliaire,
    /// Psychologists (Mon soutien psy).
    Psychologue,
    /// Outside the nomenclatures: no reimbursement.
    HorsNomenclature,
}

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

/// One family's rates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyRule {
    /// The family.
    pub family: Family,
    /// What it covers.
    pub label: String,
    /// AMO rate in percent in the care path.
    pub rate: u8,
    /// AMO rate out of the care path.
    pub out_of_path_rate: u8,
    /// Whether the participation forfaitaire applies.
    pub participation: bool,
    /// Source.
    pub source: String,
}

/// The participation forfaitaire.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participation {
    /// Per act.
    pub per_act_cents: u64,
    /// Cap per beneficiary, professional and day: a number of participations (4), not an
    /// amount; each professional the beneficiary sees that day has his own.
    pub per_day_per_professional: u32,
    /// Cap per beneficiary and calendar year, all professionals together.
    pub per_year_cents: u64,
    /// In force from (`YYYY-MM-DD`).
    pub from: String,
    /// `from`, parsed by [`Tables::parse`].
    #[serde(skip)]
    pub from_date: Option<NaiveDate>,
    /// Source.
    pub source: String,
}

/// The flat participation on heavy acts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeavyAct {
    /// Price from which an act is heavy.
    pub threshold_cents: u64,
    /// Coefficient (hundredths) from which an act is heavy.
    pub threshold_coefficient: u32,
    /// The flat amount the insured pays instead of the ticket modérateur.
    pub flat_cents: u64,
    /// Source.
    pub source: String,
}

/// A price in force from a date.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// First day (`YYYY-MM-DD`).
    pub from: String,
    /// `from`, parsed by [`Tables::parse`].
    #[serde(skip)]
    pub from_date: Option<NaiveDate>,
    /// Price of coefficient 1, cents.
    pub unit_cents: u64,
    /// Source of the figure.
    pub source: String,
}

/// One act code of the table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActTariff {
    /// NGAP letter key or CCAM code.
    pub code: String,
    /// What it is.
    pub label: String,
    /// Its family.
    pub family: Family,
    /// Profession codes allowed to bill it.
    pub professions: Vec<String>,
    /// Whether it needs a prescription.
    #[serde(default)]
    pub prescription: bool,
    /// Prices by date of effect, oldest first.
    pub prices: Vec<Price>,
}

impl ActTariff {
    /// The price in force on `date`: the last one from on or before it.
    pub fn price_on(&self, date: NaiveDate) -> Option<&Price> {
        self.prices
            .iter()
            .rfind(|p| p.from_date.is_some_and(|f| f <= date))
    }

    /// The first day the table prices the act.
    pub fn first_date(&self) -> Option<NaiveDate> {
        self.prices.first().and_then(|p| p.from_date)
    }
}

/// The whole table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    /// Version, recorded on every sheet priced with it.
    pub version: String,
    /// Rates per family.
    pub families: Vec<FamilyRule>,
    /// Participation forfaitaire.
    pub participation: Participation,
    /// Heavy acts.
    pub heavy_act: HeavyAct,
    /// The acts.
    pub acts: Vec<ActTariff>,
    /// The modifiers (majorations) an act line may carry.
    #[serde(default)]
    pub modifiers: Vec<Modifier>,
}

/// A modifier (majoration) of an act line: an amount added to its base once per line, or the
/// mark that allows an excess fee.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modifier {
    /// Code, e.g. `MEG`.
    pub code: String,
    /// What it is.
    pub label: String,
    /// Profession codes that may use it.
    pub professions: Vec<String>,
    /// Added to the line's base, cents.
    pub add_cents: u64,
    /// It allows an excess fee in sector 1 (`DE`, exigence particulière du patient).
    #[serde(default)]
    pub allows_excess: bool,
    /// Where the figure comes from.
    pub source: String,
}

/// A table that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tariff table: {0}")]
pub struct TableError(pub String);

fn day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

impl Tables {
    /// Parses and checks a table: dates readable, prices in date order, every family present.
    pub fn parse(text: &str) -> Result<Tables, TableError> {
        let mut t: Tables = toml::from_str(text).map_err(|e| TableError(e.to_string()))?;
        t.participation.from_date = day(&t.participation.from);
        if t.participation.from_date.is_none() {
            return Err(TableError("participation.from: expected YYYY-MM-DD".into()));
        }
        for p in t.acts.iter_mut().flat_map(|a| a.prices.iter_mut()) {
            p.from_date = day(&p.from);
        }
        for a in &t.acts {
            if a.prices.is_empty() {
                return Err(TableError(format!("act {}: no price", a.code)));
            }
            let mut last = None;
            for p in &a.prices {
                let d = day(&p.from).ok_or_else(|| {
                    TableError(format!("act {}: price date {} unreadable", a.code, p.from))
                })?;
                if last.is_some_and(|l| l >= d) {
                    return Err(TableError(format!(
                        "act {}: prices not in date order",
                        a.code
                    )));
                }
                last = Some(d);
            }
            if !t.families.iter().any(|f| f.family == a.family) {
                return Err(TableError(format!(
                    "act {}: family {:?} has no rates",
                    a.code, a.family
                )));
            }
            if t.acts.iter().filter(|b| b.code == a.code).count() > 1 {
                return Err(TableError(format!("act {}: listed twice", a.code)));
            }
        }
        for m in &t.modifiers {
            if t.modifiers.iter().filter(|n| n.code == m.code).count() > 1 {
                return Err(TableError(format!("modifier {}: listed twice", m.code)));
            }
        }
        Ok(t)
    }

    /// The built-in table.
    pub fn builtin() -> &'static Tables {
        static T: OnceLock<Tables> = OnceLock::new();
        T.get_or_init(|| {
            // Proven by the test `the_builtin_table_loads_and_cites_its_sources`.
            Tables::parse(BUILTIN_TABLES)
                .unwrap_or_else(|e| unreachable!("built-in tariff table is valid: {e}"))
        })
    }

    /// The act `code` and its price in force on `date`.
    pub fn act(&self, code: &str, date: NaiveDate) -> Option<(&ActTariff, &Price)> {
        let a = self.tariff(code)?;
        Some((a, a.price_on(date)?))
    }

    /// The act `code`, whatever the date.
    pub fn tariff(&self, code: &str) -> Option<&ActTariff> {
        self.acts.iter().find(|a| a.code == code)
    }

    /// The modifier `code`.
    pub fn modifier(&self, code: &str) -> Option<&Modifier> {
        self.modifiers.iter().find(|m| m.code == code)
    }

    /// The rates of family `f`.
    pub fn family(&self, f: Family) -> Option<&FamilyRule> {
        self.families.iter().find(|r| r.family == f)
    }
}

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

/// Prices a sheet's acts for a practitioner of `profession`.
///
/// Per act: base = unit price × coefficient × quantity. Rate: 100 % under
/// maternity or AT/MP cover and for ALD care, else the family's rate (the
/// out-of-path rate when out of the care path). A heavy act (price or
/// coefficient over the table's thresholds) not at 100 % costs the insured
/// the flat amount instead of the ticket modérateur. The participation
/// forfaitaire applies to families that have it, from its date, under
/// maladie cover, except for minors and the CSS, within the caps left by
/// `history` — at most [`Participation::per_day_per_professional`]
/// participations on a date of care with this sheet's professional (every act of
/// a sheet is his), and [`Participation::per_year_cents`] in the year with all
/// professionals — and never above the AMO share. An act that withholds
/// anything counts as one participation, even one cut short by the year's cap. The AMC (or the
/// CSS) pays the ticket modérateur (base − AMO share before participation),
/// never the participation nor the excess fees.
pub fn price(
    acts: &[ActLine],
    ctx: &Context,
    profession: &str,
    tables: &Tables,
    history: &dyn Fn(NaiveDate) -> PfHistory,
) -> Result<Priced, RuleError> {
    let pf = &tables.participation;
    let pf_from = pf.from_date;
    // Participation withheld by this sheet so far: per act that withheld, its date and cents.
    let mut this_sheet: Vec<(NaiveDate, u64)> = Vec::new();
    let mut out = Priced {
        acts: Vec::with_capacity(acts.len()),
        total_cents: 0,
        base_cents: 0,
        excess_cents: 0,
        amo_cents: 0,
        pf_cents: 0,
        amc_cents: 0,
        patient_cents: 0,
        tables_version: tables.version.clone(),
    };
    for (index, line) in acts.iter().enumerate() {
        if line.quantity == 0 || line.quantity > 99 {
            return Err(RuleError::BadAct {
                index,
                field: "quantity",
                reason: "must be 1 to 99".into(),
            });
        }
        if line.coefficient == 0 || line.coefficient > 100_000 {
            return Err(RuleError::BadAct {
                index,
                field: "coefficient",
                reason: "must be 0.01 to 1000 (in hundredths: 1 to 100000)".into(),
            });
        }
        let tariff = tables
            .tariff(&line.code)
            .ok_or_else(|| RuleError::UnknownAct {
                index,
                code: line.code.clone(),
                date: line.date,
            })?;
        // A code the table knows is never "unknown": a date before its history says so.
        let p = match (tariff.price_on(line.date), tariff.first_date()) {
            (Some(p), _) => p,
            (None, Some(first)) => {
                return Err(RuleError::TariffDateUnknown {
                    index,
                    code: line.code.clone(),
                    date: line.date,
                    first,
                })
            }
            // `Tables::parse` checked that every act has a price with a readable date.
            (None, None) => {
                return Err(RuleError::UnknownAct {
                    index,
                    code: line.code.clone(),
                    date: line.date,
                })
            }
        };
        if !tariff.professions.iter().any(|x| x == profession) {
            return Err(RuleError::ProfessionNotAllowed {
                index,
                code: line.code.clone(),
                profession: profession.to_string(),
            });
        }
        let Some(fam) = tables.family(tariff.family) else {
            // `Tables::parse` checked that every act's family has rates.
            return Err(RuleError::UnknownAct {
                index,
                code: line.code.clone(),
                date: line.date,
            });
        };
        if line.excess_cents > MAX_EXCESS_CENTS {
            return Err(RuleError::BadAct {
                index,
                field: "excess_cents",
                reason: format!("at most {MAX_EXCESS_CENTS} cents"),
            });
        }
        let mut added = 0u64;
        for (position, code) in line.modifiers.iter().enumerate() {
            match tables.modifier(code) {
                Some(m) if m.professions.iter().any(|x| x == profession) => {
                    added = added.saturating_add(m.add_cents);
                }
                _ => {
                    return Err(RuleError::UnknownModifier {
                        index,
                        position,
                        code: code.clone(),
                        profession: profession.to_string(),
                    })
                }
            }
        }
        let unit_coef = percent(p.unit_cents, u64::from(line.coefficient));
        let base = unit_coef
            .saturating_mul(u64::from(line.quantity))
            .saturating_add(added);
        let full_cover = ctx.cover != CoverKind::Maladie || (ctx.ald && fam.rate > 0);
        // Out of the care path lowers the rate from 16 years of age only (CSS art. L162-5-3).
        let out_of_path =
            ctx.care_path == CarePath::OutOfPath && age_on(ctx.birth_date, line.date) >= 16;
        let rate = if full_cover {
            100
        } else if out_of_path {
            fam.out_of_path_rate
        } else {
            fam.rate
        };
        let h = &tables.heavy_act;
        let heavy = rate > 0
            && rate < 100
            && (unit_coef >= h.threshold_cents || line.coefficient >= h.threshold_coefficient);
        let amo = if heavy {
            base.saturating_sub(h.flat_cents)
        } else {
            percent(base, u64::from(rate))
        };
        let exempt =
            age_on(ctx.birth_date, line.date) < 18 || ctx.css || ctx.cover != CoverKind::Maladie;
        let mut pf_cents = 0;
        if fam.participation && !exempt && pf_from.is_some_and(|f| f <= line.date) {
            let before = history(line.date);
            let sheet_day = this_sheet.iter().filter(|(d, _)| *d == line.date).count();
            let sheet_year: u64 = this_sheet
                .iter()
                .filter(|(d, _)| d.year() == line.date.year())
                .map(|(_, c)| c)
                .sum();
            let day_count =
                u64::from(before.same_day_with_professional).saturating_add(sheet_day as u64);
            if day_count < u64::from(pf.per_day_per_professional) {
                pf_cents = pf
                    .per_act_cents
                    .min(
                        pf.per_year_cents
                            .saturating_sub(before.same_year_cents.saturating_add(sheet_year)),
                    )
                    .min(amo);
            }
            if pf_cents > 0 {
                this_sheet.push((line.date, pf_cents));
            }
        }
        let ticket = base - amo;
        let amc = if ctx.amc || ctx.css { ticket } else { 0 };
        out.acts.push(PricedAct {
            unit_cents: p.unit_cents,
            base_cents: base,
            rate,
            amo_cents: amo,
            pf_cents,
            heavy_flat: heavy,
        });
        out.base_cents += base;
        out.excess_cents += line.excess_cents;
        out.amo_cents += amo - pf_cents;
        out.pf_cents += pf_cents;
        out.amc_cents += amc;
    }
    out.total_cents = out.base_cents + out.excess_cents;
    out.patient_cents = out.total_cents - out.amo_cents - out.amc_cents;
    Ok(out)
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

/// A sheet whose shares are not what the tables give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: the sheet says {found}, the tables give {expected}")]
pub struct ShareError {
    /// The field at fault (`acts[0].amo_cents`, `amounts.due_cents` …).
    pub field: String,
    /// What the tables give.
    pub expected: String,
    /// What the sheet says.
    pub found: String,
}

/// Re-prices a received sheet (what an insurer does) and compares every share: per act the
/// base, the rate and the AMO share exactly, the participation at most what the tables allow
/// (the beneficiary's history, unknown here, can only lower it); then the sums, the AMC share,
/// the patient's part and what the patient paid under the sheet's tiers payant.
pub fn check_shares(sheet: &crate::fse::CareSheet, tables: &Tables) -> Result<(), ShareError> {
    let err = |field: String, expected: String, found: String| ShareError {
        field,
        expected,
        found,
    };
    let ymd = |s: &str| NaiveDate::parse_from_str(s, "%Y%m%d").ok();
    let birth = ymd(&sheet.beneficiary.birth_date).ok_or_else(|| {
        err(
            "beneficiary.birth_date".into(),
            "YYYYMMDD".into(),
            sheet.beneficiary.birth_date.clone(),
        )
    })?;
    let mut lines = Vec::with_capacity(sheet.acts.len());
    for (i, a) in sheet.acts.iter().enumerate() {
        let date = ymd(&a.date)
            .ok_or_else(|| err(format!("acts[{i}].date"), "YYYYMMDD".into(), a.date.clone()))?;
        lines.push(ActLine {
            code: a.code.clone(),
            coefficient: a.coefficient,
            quantity: a.quantity,
            date,
            excess_cents: a.excess_cents,
            modifiers: a.modifiers.clone(),
        });
    }
    let ctx = Context {
        birth_date: birth,
        cover: sheet.cover.kind,
        ald: sheet.cover.ald,
        css: sheet.cover.css,
        care_path: sheet.care_path,
        amc: sheet.tiers_payant.amc_number.is_some(),
    };
    let priced = price(
        &lines,
        &ctx,
        &sheet.practitioner.profession,
        tables,
        &|_| PfHistory::default(),
    )
    .map_err(|e| err(e.field(), e.code().into(), e.to_string()))?;
    let (mut amo, mut pf, mut amc) = (0u64, 0u64, 0u64);
    for (i, (a, p)) in sheet.acts.iter().zip(&priced.acts).enumerate() {
        let exact = [
            ("base_cents", p.base_cents, a.base_cents),
            ("rate", u64::from(p.rate), u64::from(a.rate)),
            ("amo_cents", p.amo_cents, a.amo_cents),
        ];
        for (name, expected, found) in exact {
            if expected != found {
                return Err(err(
                    format!("acts[{i}].{name}"),
                    expected.to_string(),
                    found.to_string(),
                ));
            }
        }
        if a.pf_cents > p.pf_cents {
            return Err(err(
                format!("acts[{i}].pf_cents"),
                format!("at most {}", p.pf_cents),
                a.pf_cents.to_string(),
            ));
        }
        amo += a.amo_cents - a.pf_cents;
        pf += a.pf_cents;
        if ctx.amc || ctx.css {
            amc += a.base_cents - a.amo_cents;
        }
    }
    let x = &sheet.amounts;
    let total = priced.base_cents + priced.excess_cents;
    let patient = total.saturating_sub(amo + amc);
    let mut due = total;
    if sheet.tiers_payant.amo {
        due -= amo;
    }
    if sheet.tiers_payant.amc {
        due -= amc;
    }
    let sums = [
        ("amounts.total_cents", total, x.total_cents),
        ("amounts.base_cents", priced.base_cents, x.base_cents),
        ("amounts.excess_cents", priced.excess_cents, x.excess_cents),
        ("amounts.amo_cents", amo, x.amo_cents),
        ("amounts.pf_cents", pf, x.pf_cents),
        ("amounts.amc_cents", amc, x.amc_cents),
        ("amounts.patient_cents", patient, x.patient_cents),
        ("amounts.due_cents", due, x.due_cents),
    ];
    for (field, expected, found) in sums {
        if expected != found {
            return Err(err(field.into(), expected.to_string(), found.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    fn ctx(birth: NaiveDate) -> Context {
        Context {
            birth_date: birth,
            cover: CoverKind::Maladie,
            ald: false,
            css: false,
            care_path: CarePath::Treating,
            amc: false,
        }
    }

    fn act(code: &str, coefficient: u32, date: NaiveDate) -> ActLine {
        ActLine {
            code: code.into(),
            coefficient,
            quantity: 1,
            date,
            excess_cents: 0,
            modifiers: vec![],
        }
    }

    #[test]
    fn modifiers_add_to_the_base_once_and_are_checked_per_profession() {
        let t = Tables::builtin();
        let day = d(2026, 11, 16);
        let mut line = act("G", 100, day);
        line.modifiers = vec!["MEG".into()];
        let child = ctx(d(2023, 1, 1));
        let p = price(&[line.clone()], &child, "10", t, &|_| PfHistory::default()).unwrap();
        // G 30 € + MEG 5 € = 35 €, 70 %, a child pays no participation.
        assert_eq!(p.base_cents, 3500);
        assert_eq!(p.amo_cents, 2450);
        assert_eq!(p.pf_cents, 0);
        line.modifiers = vec!["MEG".into(), "MCI".into()];
        let e = price(&[line.clone()], &child, "10", t, &|_| PfHistory::default()).unwrap_err();
        assert_eq!(e.code(), "UNKNOWN_MODIFIER");
        assert_eq!(e.field(), "acts[0].modifiers[1]");
        line.modifiers = vec!["XYZ".into()];
        let e = price(&[line], &child, "10", t, &|_| PfHistory::default()).unwrap_err();
        assert_eq!(e.field(), "acts[0].modifiers[0]");
    }

    #[test]
    fn out_of_path_lowers_the_rate_from_sixteen_only() {
        let t = Tables::builtin();
        let day = d(2026, 11, 16);
        let mut teen = ctx(d(2010, 11, 16));
        teen.care_path = CarePath::OutOfPath;
        let p = price(&[act("G", 100, day)], &teen, "10", t, &|_| {
            PfHistory::default()
        })
        .unwrap();
        assert_eq!(p.acts[0].rate, 30);
        let mut child = ctx(d(2010, 11, 17));
        child.care_path = CarePath::OutOfPath;
        let p = price(&[act("G", 100, day)], &child, "10", t, &|_| {
            PfHistory::default()
        })
        .unwrap();
        assert_eq!(p.acts[0].rate, 70);
    }

    #[test]
    fn an_insurer_re_prices_a_sheet_and_finds_a_wrong_share() {
        let t = Tables::builtin();
        let good = crate::fse::CareSheet::sample(1);
        check_shares(&good, t).unwrap();
        let mut s = good.clone();
        s.acts[0].amo_cents = 2000;
        assert_eq!(check_shares(&s, t).unwrap_err().field, "acts[0].amo_cents");
        let mut s = good.clone();
        s.acts[0].pf_cents = 300;
        assert_eq!(check_shares(&s, t).unwrap_err().field, "acts[0].pf_cents");
        let mut s = good.clone();
        s.acts[0].pf_cents = 0; // a history can lower it; the sums must follow
        assert_eq!(check_shares(&s, t).unwrap_err().field, "amounts.amo_cents");
        s.amounts.amo_cents = 2100;
        s.amounts.pf_cents = 0;
        s.amounts.patient_cents = 900;
        s.amounts.due_cents = 900;
        check_shares(&s, t).unwrap();
        let mut s = good.clone();
        s.amounts.due_cents = 0;
        assert_eq!(check_shares(&s, t).unwrap_err().field, "amounts.due_cents");
        let mut s = good;
        s.acts[0].code = "ZZZ".into();
        assert_eq!(check_shares(&s, t).unwrap_err().field, "acts[0].code");
    }

    #[test]
    fn the_builtin_table_loads_and_cites_its_sources() {
        let t = Tables::builtin();
        assert!(!t.version.is_empty());
        for a in &t.acts {
            assert!(a.prices.iter().all(|p| !p.source.is_empty()), "{}", a.code);
        }
        assert!(Tables::parse("version = 1").is_err());
        let twice = BUILTIN_TABLES.replace("code = \"GS\"", "code = \"G\"");
        assert!(Tables::parse(&twice)
            .unwrap_err()
            .0
            .contains("listed twice"));
    }

    fn one(
        code: &str,
        date: NaiveDate,
        birth: NaiveDate,
        profession: &str,
    ) -> Result<Priced, RuleError> {
        price(
            &[act(code, 100, date)],
            &ctx(birth),
            profession,
            Tables::builtin(),
            &|_| PfHistory::default(),
        )
    }

    #[test]
    fn gp_consultation_worked_example() {
        // G 30 € → 70 % = 21 € − 2 € PF = 19 € AMO; the patient pays 11 €.
        let a = one("G", d(2026, 11, 22), d(1985, 5, 12), "10").unwrap();
        assert_eq!(
            (a.base_cents, a.amo_cents, a.pf_cents, a.patient_cents),
            (3000, 1900, 200, 1100)
        );
        // In tiers payant AMO the patient pays only the ticket modérateur and the PF today.
        let tp = |amo, amc| TiersPayant {
            amo,
            amc,
            amc_number: None,
        };
        assert_eq!(a.amounts(&tp(true, false)).due_cents, 1100);
        assert_eq!(a.amounts(&tp(false, false)).due_cents, 3000);
    }

    #[test]
    fn minors_are_exempt_and_old_tariff_applies_before_its_date() {
        let a = one("G", d(2026, 11, 22), d(2015, 1, 1), "10").unwrap();
        assert_eq!((a.amo_cents, a.pf_cents), (2100, 0));
        let a = one("G", d(2024, 12, 21), d(1985, 1, 1), "10").unwrap();
        assert_eq!(a.base_cents, 2650);
        let e = one("ZZZ", d(2026, 1, 1), d(1985, 1, 1), "10").unwrap_err();
        assert_eq!(
            (e.code(), e.field().as_str()),
            ("UNKNOWN_ACT", "acts[0].code")
        );
        let e = one("AMI", d(2026, 1, 1), d(1985, 1, 1), "10").unwrap_err();
        assert_eq!(e.code(), "ACT_NOT_ALLOWED_FOR_PROFESSION");
    }

    #[test]
    fn covers_path_and_amc() {
        let t = Tables::builtin();
        let born = d(1980, 1, 1);
        let g = [act("G", 100, d(2026, 3, 2))];
        // Out of the care path: 30 %, PF still withheld.
        let out = price(
            &g,
            &Context {
                care_path: CarePath::OutOfPath,
                ..ctx(born)
            },
            "10",
            t,
            &|_| PfHistory::default(),
        )
        .unwrap();
        assert_eq!(
            (out.amo_cents, out.pf_cents, out.patient_cents),
            (700, 200, 2300)
        );
        // ALD care: 100 %, PF withheld (ALD is not exempt).
        let ald = price(
            &g,
            &Context {
                ald: true,
                ..ctx(born)
            },
            "10",
            t,
            &|_| PfHistory::default(),
        )
        .unwrap();
        assert_eq!(
            (ald.amo_cents, ald.pf_cents, ald.patient_cents),
            (2800, 200, 200)
        );
        // Maternity and AT/MP: 100 %, no PF.
        for cover in [CoverKind::Maternite, CoverKind::AtMp] {
            let m = price(&g, &Context { cover, ..ctx(born) }, "10", t, &|_| {
                PfHistory::default()
            })
            .unwrap();
            assert_eq!((m.amo_cents, m.pf_cents, m.patient_cents), (3000, 0, 0));
        }
        // CSS: no PF, the CSS pays the ticket modérateur: nothing left.
        let css = price(
            &g,
            &Context {
                css: true,
                ..ctx(born)
            },
            "10",
            t,
            &|_| PfHistory::default(),
        )
        .unwrap();
        assert_eq!(
            (css.amo_cents, css.amc_cents, css.patient_cents),
            (2100, 900, 0)
        );
        // An AMC pays the ticket modérateur but not the PF nor the excess fee.
        let mut cs = [act("CS", 100, d(2026, 3, 2))];
        cs[0].excess_cents = 2000;
        let amc = price(
            &cs,
            &Context {
                amc: true,
                ..ctx(born)
            },
            "10",
            t,
            &|_| PfHistory::default(),
        )
        .unwrap();
        assert_eq!(
            (
                amc.total_cents,
                amc.amo_cents,
                amc.amc_cents,
                amc.patient_cents
            ),
            (5150, 2005, 945, 2200)
        );
    }

    #[test]
    fn participation_caps_per_professional_and_day_and_per_year() {
        let t = Tables::builtin();
        let born = d(1980, 1, 1);
        let day = d(2026, 3, 2);
        let g = || act("G", 100, day);
        let with = |day_acts: u32, year_cents: u64| PfHistory {
            same_day_with_professional: day_acts,
            same_year_cents: year_cents,
        };
        // Five acts on one sheet: the first four withhold 2 € each, the fifth nothing
        // (4 participations a day with one professional: 4 × 2 € = 8 €).
        let five = [g(), act("DEQP003", 100, day), g(), g(), g()];
        let p = price(&five, &ctx(born), "10", t, &|_| PfHistory::default()).unwrap();
        assert_eq!(
            p.acts.iter().map(|a| a.pf_cents).collect::<Vec<_>>(),
            vec![200, 200, 200, 200, 0]
        );
        assert_eq!(p.pf_cents, 800);
        // Three already with this professional today: one more, then none.
        let p = price(&five[..2], &ctx(born), "10", t, &|_| with(3, 600)).unwrap();
        assert_eq!(
            p.acts.iter().map(|a| a.pf_cents).collect::<Vec<_>>(),
            vec![200, 0]
        );
        // Four with this professional: the day's cap is reached.
        let p = price(&five[..1], &ctx(born), "10", t, &|_| with(4, 800)).unwrap();
        assert_eq!(p.pf_cents, 0, "day cap with this professional reached");
        // Another professional's four of the day count only in the year: the caller gives
        // this professional's count (0) and the year's cents (800): 2 € withheld.
        let p = price(&five[..1], &ctx(born), "10", t, &|_| with(0, 800)).unwrap();
        assert_eq!(p.pf_cents, 200);
        // The year's cap across all professionals: 49 € used leaves 1 €, 50 € none.
        let p = price(&five[..1], &ctx(born), "10", t, &|_| with(0, 4900)).unwrap();
        assert_eq!(p.pf_cents, 100, "year cap leaves 1 €");
        let p = price(&five[..2], &ctx(born), "10", t, &|_| with(0, 4900)).unwrap();
        assert_eq!(
            p.acts.iter().map(|a| a.pf_cents).collect::<Vec<_>>(),
            vec![100, 0],
            "1 € then nothing: the year is full"
        );
        // A participation cut short by the year's cap is still one of the day's four: with
        // three today and 1 € left in the year, the fourth withholds 1 €, and after it the
        // day is full whatever the year (4 = 3 + 1).
        let p = price(&five[..1], &ctx(born), "10", t, &|_| with(3, 4900)).unwrap();
        assert_eq!(p.pf_cents, 100);
        // Two dates on one sheet: each date has its own four.
        let mut two_days = vec![g(), g(), g(), g(), g()];
        two_days.push(act("G", 100, d(2026, 3, 3)));
        let p = price(&two_days, &ctx(born), "10", t, &|_| PfHistory::default()).unwrap();
        assert_eq!(
            p.acts.iter().map(|a| a.pf_cents).collect::<Vec<_>>(),
            vec![200, 200, 200, 200, 0, 200]
        );
        // Before 15 May 2024 the 2 € did not apply (it was 1 €: out of this table's range).
        let p = price(
            &[act("G", 100, d(2024, 5, 14))],
            &ctx(born),
            "10",
            t,
            &|_| PfHistory::default(),
        )
        .unwrap();
        assert_eq!(p.pf_cents, 0);
    }

    #[test]
    fn the_tariff_history_prices_old_dates_and_names_a_date_before_it() {
        let adult = d(1980, 1, 1);
        let base = |code: &str, date| one(code, date, adult, "10").map(|p| p.base_cents);
        // G: 25 € from 1 May 2017, 26.50 € from 1 Nov 2023, 30 € from 22 Dec 2024.
        assert_eq!(base("G", d(2017, 5, 1)), Ok(2500));
        assert_eq!(base("G", d(2023, 10, 31)), Ok(2500));
        assert_eq!(base("G", d(2023, 11, 1)), Ok(2650));
        assert_eq!(base("G", d(2024, 12, 21)), Ok(2650));
        assert_eq!(base("G", d(2024, 12, 22)), Ok(3000));
        // The day before the table: a refusal that says so, on the date.
        let e = one("G", d(2017, 4, 30), adult, "10").unwrap_err();
        assert_eq!(e.code(), "TARIFF_DATE_UNKNOWN");
        assert_eq!(e.field(), "acts[0].date");
        assert_eq!(
            e.to_string(),
            "no price for G on 2017-04-30: the table starts on 2017-05-01"
        );
        // An act created later (Mon soutien psy, 5 April 2022): before it, the same refusal.
        let e = one("APS", d(2022, 4, 4), adult, "93").unwrap_err();
        assert_eq!(e.code(), "TARIFF_DATE_UNKNOWN");
        // A code the table does not know stays an unknown act, whatever the date.
        let e = one("ZZZ", d(2017, 4, 30), adult, "10").unwrap_err();
        assert_eq!(e.code(), "UNKNOWN_ACT");
        // Every act of the table is priced on every day of this year and the last (the
        // history a sheet can reach), except those created since.
        let t = Tables::builtin();
        for a in &t.acts {
            let first = a.first_date().unwrap();
            assert!(first <= d(2023, 1, 1), "{}: starts on {first}", a.code);
        }
    }

    #[test]
    fn nurse_coefficients_round_to_the_cent_and_heavy_acts_cost_the_flat_amount() {
        let t = Tables::builtin();
        let born = d(1950, 1, 1);
        // AMI 1.5 = 4.725 € → 4.73 €; 60 %.
        let p = price(
            &[act("AMI", 150, d(2026, 3, 2))],
            &ctx(born),
            "60",
            t,
            &|_| PfHistory::default(),
        )
        .unwrap();
        assert_eq!((p.base_cents, p.amo_cents), (473, 284));
        // AMI 60 (coefficient ≥ 60): the insured pays 24 € instead of 40 %.
        let p = price(
            &[act("AMI", 6000, d(2026, 3, 2))],
            &ctx(born),
            "60",
            t,
            &|_| PfHistory::default(),
        )
        .unwrap();
        assert_eq!(
            (p.base_cents, p.amo_cents, p.patient_cents),
            (18900, 16500, 2400)
        );
        assert!(p.acts[0].heavy_flat);
    }

    proptest! {
        #[test]
        fn shares_always_add_up(
            code in prop::sample::select(vec!["G", "CS", "APC", "DEQP003", "AMI", "AMK", "IFD", "APS", "HN"]),
            coefficient in 1u32..10_000, quantity in 1u32..10, excess in 0u64..100_000,
            days in 0i64..3000, age in 0i64..100,
            cover in prop::sample::select(vec![CoverKind::Maladie, CoverKind::Maternite, CoverKind::AtMp]),
            ald: bool, css: bool, amc: bool, out_of_path: bool,
            day_used in 0u32..6, year_used in 0u64..6000,
        ) {
            let t = Tables::builtin();
            let date = d(2019, 1, 1) + chrono::Days::new(days as u64);
            let born = date - chrono::Days::new((age * 365) as u64);
            let profession = t.acts.iter().find(|a| a.code == code).unwrap().professions[0].clone();
            let line = ActLine { code: code.into(), coefficient, quantity, date, excess_cents: excess, modifiers: vec![] };
            let c = Context { birth_date: born, cover, ald, css, care_path: if out_of_path { CarePath::OutOfPath } else { CarePath::Treating }, amc };
            if let Ok(p) = price(&[line.clone(), line], &c, &profession, t, &|_| PfHistory { same_day_with_professional: day_used, same_year_cents: year_used }) {
                prop_assert_eq!(p.total_cents, p.amo_cents + p.amc_cents + p.patient_cents);
                prop_assert!(p.amo_cents + p.pf_cents + p.amc_cents <= p.base_cents);
                prop_assert!(p.pf_cents <= p.patient_cents);
                // At most 4 participations of at most 2 € a day with one professional.
                let day_left = 4u64.saturating_sub(u64::from(day_used));
                prop_assert!(p.pf_cents <= 200 * day_left);
                prop_assert!(p.acts.iter().filter(|a| a.pf_cents > 0).count() as u64 <= day_left);
                prop_assert!(p.pf_cents <= 5000u64.saturating_sub(year_used));
                prop_assert_eq!(p.total_cents, p.base_cents + p.excess_cents);
            }
        }
    }
}
