//! Building a care sheet from an `fse.create` request and what the cards
//! say: every check a sheet can be refused on — each with a stable code and
//! the field at fault — then pricing (`rules`) and the sending deadline
//! (`calendar`). Pure: the caller reads the cards, the participation
//! history and the clock, allocates the sheet number and has the Vitale
//! card sign the proof of presence.
//!
//! Checks run in a fixed order — request shape (each text field's character set and length,
//! `text`, after its normalisation: the sheet carries the normalised text), CPS, situation,
//! remplaçant, mode and Vitale card, beneficiary, dates and rights, cover, care path,
//! tiers payant, sending deadline, prescriptions and excess fees, prices,
//! expected amounts — so that a request with several faults always names the
//! same first one. The sending deadline comes before the acts: a sheet past it
//! cannot be sent whatever its acts, and a date too old for the tariff table
//! is past it too (unless a series reaches back that far: then
//! `TARIFF_DATE_UNKNOWN`).
//!
//! The daemon makes a sheet in three pure calls around its own reads: [`Request::new`] checks
//! the acts before the cards are read, [`Request::prepare`] runs the checks up to the
//! beneficiary (whose [`Prepared::history_key`] names the participation history to read), and
//! [`Prepared::make_sheet`] runs the rest and prices the sheet. [`build`] chains the three.

use std::borrow::Cow;

use chrono::{Datelike, NaiveDate};

use crate::api::{ActRequest, FseCreateParams};
use crate::cards::{Beneficiary, CpsData, Situation, VitaleData};
use crate::fse::{CareSheet, Mode, SheetBeneficiary, SheetPractitioner};
use crate::pki::CertCheck;
use crate::rules;

mod acts;
mod beneficiary;
mod coverage;
mod history;
mod practitioner;
mod refusal;
mod request;
#[cfg(test)]
mod tests;

pub use beneficiary::{beneficiary, history_key, MAX_RANK};
pub use history::{history_on, participation_by_date};
pub use practitioner::national_id_is_valid;
pub use refusal::*;
pub use request::{acts_of, normalise_text, requested_acts};

/// What fsed read from the cards for this sheet.
#[derive(Debug, Clone, Copy)]
pub struct CardsRead<'a> {
    /// The CPS.
    pub cps: &'a CpsData,
    /// The outcome of its certificate check (`None`: not checked).
    pub cps_certificate: Option<&'a CertCheck>,
    /// The Vitale card (absent in degraded mode).
    pub vitale: Option<&'a VitaleData>,
    /// The outcome of its certificate check.
    pub vitale_certificate: Option<&'a CertCheck>,
}

/// Parses a `YYYYMMDD` date: eight ASCII digits naming a real day.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0'));
    NaiveDate::from_ymd_opt(i32::try_from(n(0..4)).ok()?, n(4..6), n(6..8))
}

/// A date as `YYYYMMDD`.
pub fn ymd(d: NaiveDate) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

fn in_range(from: &str, until: &str, date: NaiveDate) -> bool {
    matches!((parse_date(from), parse_date(until)), (Some(f), Some(u)) if f <= date && date <= u)
}

/// An `fse.create` request whose acts are found and counted ([`acts_of`]): the one check it
/// meets before the cards are read. Copy: two references.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    params: &'a FseCreateParams,
    acts: &'a [ActRequest],
}

impl<'a> Request<'a> {
    /// Finds the request's acts (`act` or `acts`), refused when there are none or too many.
    pub fn new(params: &'a FseCreateParams) -> Result<Self, Refusal> {
        Ok(Request {
            params,
            acts: acts_of(params)?,
        })
    }

    /// Checks, in their order, the request's text (normalised: the sheet carries it) and dates
    /// of care, the CPS, the situation, the remplacement, the mode and the Vitale card, and
    /// the beneficiary (steps 1 to 6).
    pub fn prepare(self, cards: &CardsRead<'a>, today: NaiveDate) -> Result<Prepared<'a>, Refusal> {
        // 1. The request's shape: its text, normalised, is what the sheet carries from here on
        // (its acts are not changed by it: they are kept as found).
        let params = request::normalise(self.params, self.acts)?;
        let dates = request::dates(self.acts, today)?;
        // 2. The CPS.
        practitioner::check_cps(cards, today)?;
        let cps = cards.cps;
        // 3. The situation d'exercice.
        let situation = practitioner::situation(&params, cps)?;
        // 4. Remplaçant and practitioner replaced.
        practitioner::check_replaced(&params, cps, situation)?;
        // 5. Mode and Vitale card.
        let (mode, vitale) = practitioner::mode_and_vitale(&params, cards)?;
        // 6. The beneficiary.
        let (beneficiary, on_card) = beneficiary(&params, vitale)?;
        let birth = parse_date(&beneficiary.birth_date).ok_or_else(|| {
            Refusal::invalid(
                "beneficiary.birth_date",
                "unreadable birth date on the card",
            )
        })?;
        Ok(Prepared {
            params,
            acts: self.acts,
            dates,
            today,
            cps,
            situation,
            mode,
            vitale,
            beneficiary,
            on_card,
            birth,
        })
    }
}

/// A request past the checks up to its beneficiary ([`Request::prepare`]): what they found,
/// carried into [`Prepared::make_sheet`] so that nothing is parsed twice.
#[derive(Debug)]
pub struct Prepared<'a> {
    params: Cow<'a, FseCreateParams>,
    acts: &'a [ActRequest],
    dates: Vec<NaiveDate>,
    today: NaiveDate,
    cps: &'a CpsData,
    situation: &'a Situation,
    mode: Mode,
    vitale: Option<&'a VitaleData>,
    beneficiary: SheetBeneficiary,
    on_card: Option<&'a Beneficiary>,
    birth: NaiveDate,
}

impl<'a> Prepared<'a> {
    /// The key of the beneficiary's participation history ([`history_key`]).
    pub fn history_key(&self) -> String {
        history_key(&self.beneficiary)
    }

    /// The professional of the participation's day cap: the CPS holder's national id, who
    /// performs the acts (a remplaçant included).
    pub fn professional(&self) -> &'a str {
        &self.cps.holder.national_id
    }

    /// Runs the remaining checks (steps 7 to 14: dates and rights, cover, care path, tiers
    /// payant, sending deadline, prescriptions and excess fees, prices, expected amounts) and
    /// makes the sheet. It has number 0 and no proof of presence: the caller allocates the
    /// number, then has the Vitale card sign (secured mode).
    ///
    /// `history` gives the participation forfaitaire already withheld for this beneficiary
    /// (keyed by [`Prepared::history_key`]) on other sheets, per date of care, as the CPS
    /// holder's sheet sees it ([`history_on`] with [`Prepared::professional`]).
    pub fn make_sheet(
        self,
        created_at: &str,
        tables: &rules::Tables,
        history: &dyn Fn(NaiveDate) -> rules::PfHistory,
    ) -> Result<CareSheet, Refusal> {
        let (p, dates, cps) = (&*self.params, &self.dates[..], self.cps);
        // 7. Dates of care, deadline and rights.
        let (first, last) = coverage::check_dates(dates, self.today, self.birth, self.on_card)?;
        // 8. Cover.
        let cover = coverage::cover(p, dates, first, self.on_card)?;
        // 9. Care path: doctors only.
        let care_path = coverage::care_path(p, cps)?;
        // 10. Tiers payant.
        let (tiers_payant, amc) = coverage::tiers_payant(p, self.vitale, dates, &cover, self.mode)?;
        // 11. The sending deadline.
        let deadline = coverage::deadline(dates, last, &tiers_payant, self.today)?;
        // 12. Prescriptions and excess fees.
        let profession = cps.holder.profession.as_str();
        acts::check_prescriptions(self.acts, dates, profession, self.situation, tables)?;
        // 13. Prices.
        let lines = acts::lines(self.acts, dates);
        let ctx = rules::Context {
            birth_date: self.birth,
            cover: cover.kind,
            ald: cover.ald,
            css: cover.css,
            care_path,
            amc: amc.is_some(),
        };
        let priced = rules::price(&lines, &ctx, profession, tables, history)
            .map_err(|e| Refusal::rule(refusal::pricing_rule(&e), e.field(), e.to_string()))?;
        let amounts = priced.amounts(&tiers_payant);
        // 14. What the practice software expects.
        acts::check_expected(p, &amounts)?;

        let acts = acts::sheet_acts(self.acts, lines, &priced.acts);
        Ok(CareSheet {
            number: 0,
            created_at: created_at.to_string(),
            practitioner: practitioner(cps, self.situation),
            replaced: p.replaced.clone(),
            beneficiary: self.beneficiary,
            acts,
            care_path,
            cover,
            tiers_payant,
            amounts,
            mode: self.mode,
            degraded_reason: p.degraded.as_ref().map(|d| d.reason.trim().to_string()),
            deadline: ymd(deadline),
            tables_version: priced.tables_version,
            presence: None,
            rights: None,
            app_presence: None,
        })
    }
}

/// The practitioner a sheet names: the CPS holder, billing under the chosen situation.
fn practitioner(cps: &CpsData, situation: &Situation) -> SheetPractitioner {
    SheetPractitioner {
        national_id: cps.holder.national_id.clone(),
        surname: cps.holder.surname.clone(),
        given_name: cps.holder.given_name.clone(),
        profession: cps.holder.profession.clone(),
        specialty: cps.holder.specialty.clone(),
        billing_number: situation.billing_number.clone(),
        sector: situation.sector,
        cps_serial: cps.holder.serial.clone(),
    }
}

/// Builds, checks and prices the sheet `p` asks for, in one call: [`Request::new`],
/// [`Request::prepare`], [`Prepared::make_sheet`]. The result has number 0 and no proof of
/// presence: the caller allocates the number, then has the Vitale card sign (secured mode).
///
/// `history` gives the participation forfaitaire already withheld for this beneficiary (keyed
/// by [`history_key`]) on other sheets, per date of care, as the CPS holder's sheet sees it
/// ([`history_on`] with his national id: the professional of the day's cap is the one who
/// performs the acts and signs with his CPS, a remplaçant included).
pub fn build(
    p: &FseCreateParams,
    cards: &CardsRead<'_>,
    today: NaiveDate,
    created_at: &str,
    tables: &rules::Tables,
    history: &dyn Fn(NaiveDate) -> rules::PfHistory,
) -> Result<CareSheet, Refusal> {
    Request::new(p)?
        .prepare(cards, today)?
        .make_sheet(created_at, tables, history)
}
