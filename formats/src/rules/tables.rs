//! The tariff tables: their model (act codes with their dated prices, families and their
//! rates, modifiers, the participation forfaitaire, heavy acts), loading and lookups.

use std::sync::OnceLock;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The built-in tariff table, TOML.
pub const BUILTIN_TABLES: &str = include_str!("../../tables/tariffs.toml");

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
