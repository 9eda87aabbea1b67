//! Steps 7 to 11 of a sheet: the dates of care against today, the birth and the AMO rights;
//! the cover (maladie, maternity, AT/MP; ALD, CSS); the care path; the tiers payant; the
//! sending deadline.

use chrono::NaiveDate;

use super::{
    in_range, parse_date, ymd, Refusal, ACT_DATE_BEFORE_BIRTH, ACT_DATE_IN_FUTURE, ALD_NOT_OPEN,
    AMC_TIERS_PAYANT_UNAVAILABLE, AT_MP_INVALID, CARE_PATH_INVALID, DEGRADED_OUTSIDE_TIERS_PAYANT,
    PAST_DEADLINE, RIGHTS_CLOSED, TIERS_PAYANT_REQUIRED,
};
use crate::api::FseCreateParams;
use crate::cards::{Amc, Beneficiary, CoverageKind, CpsData, VitaleData};
use crate::fse::{CarePath, Cover, CoverKind, Mode, TiersPayant};
use crate::{calendar, text};

/// Step 7: no date of care after today or before the beneficiary's birth, each within his AMO
/// rights on the card (secured mode). Returns the indices of the first and the last date.
pub(super) fn check_dates(
    dates: &[NaiveDate],
    today: NaiveDate,
    birth: NaiveDate,
    on_card: Option<&Beneficiary>,
) -> Result<(usize, usize), Refusal> {
    let (mut first, mut last) = (0, 0);
    for (i, date) in dates.iter().enumerate() {
        if *date > today {
            return Err(Refusal::rule(
                ACT_DATE_IN_FUTURE,
                format!("acts[{i}].date"),
                format!("date of care {} is after today", ymd(*date)),
            ));
        }
        if *date < birth {
            return Err(Refusal::rule(
                ACT_DATE_BEFORE_BIRTH,
                format!("acts[{i}].date"),
                "date of care before the beneficiary's birth",
            ));
        }
        if let Some(b) = on_card {
            if !in_range(&b.rights_from, &b.rights_until, *date) {
                return Err(Refusal::rule(
                    RIGHTS_CLOSED,
                    "beneficiary.rights",
                    format!("no open AMO rights on {}", ymd(*date)),
                ));
            }
        }
        if *date < dates[first] {
            first = i;
        }
        if *date > dates[last] {
            last = i;
        }
    }
    Ok((first, last))
}

/// Whether the card shows a coverage of `kind` on every date of care (all acts of a sheet fall
/// under one cover).
fn covered(on_card: Option<&Beneficiary>, dates: &[NaiveDate], kind: CoverageKind) -> bool {
    on_card.is_some_and(|b| {
        b.coverages
            .iter()
            .any(|c| c.kind == kind && dates.iter().all(|d| in_range(&c.from, &c.until, *d)))
    })
}

/// Step 8: the cover — AT/MP as the request gives it (a date not after the first care, the
/// caisse's number), else maternity when the card shows it, else maladie — with the ALD the
/// request claims (open on the card) and the CSS the card shows.
pub(super) fn cover(
    p: &FseCreateParams,
    dates: &[NaiveDate],
    first: usize,
    on_card: Option<&Beneficiary>,
) -> Result<Cover, Refusal> {
    let kind = if let Some(at) = &p.at_mp {
        let date = parse_date(&at.date)
            .ok_or_else(|| Refusal::rule(AT_MP_INVALID, "at_mp.date", "expected YYYYMMDD"))?;
        if date > dates[first] {
            return Err(Refusal::rule(
                AT_MP_INVALID,
                "at_mp.date",
                "the accident or first finding is after the care",
            ));
        }
        if let Err(e) = text::code(&at.number, text::AT_MP_NUMBER_MAX) {
            return Err(Refusal::rule(
                AT_MP_INVALID,
                "at_mp.number",
                match e.0.strip_prefix("is ") {
                    Some(rest) => format!("the AT/MP number given by the caisse is {rest}"),
                    None => format!("the AT/MP number given by the caisse: {e}"),
                },
            ));
        }
        CoverKind::AtMp
    } else if covered(on_card, dates, CoverageKind::Maternite) {
        CoverKind::Maternite
    } else {
        CoverKind::Maladie
    };
    if p.ald && on_card.is_some() && !covered(on_card, dates, CoverageKind::Ald) {
        return Err(Refusal::rule(
            ALD_NOT_OPEN,
            "ald",
            "the Vitale card shows no open ALD for this beneficiary at the date of care",
        ));
    }
    Ok(Cover {
        kind,
        ald: p.ald,
        css: covered(on_card, dates, CoverageKind::Css),
        at_mp: p.at_mp.clone(),
    })
}

/// Step 9: the care path, for doctors only (a doctor's sheet without one is in the path).
pub(super) fn care_path(p: &FseCreateParams, cps: &CpsData) -> Result<CarePath, Refusal> {
    let doctor = cps.holder.profession == "10";
    match (doctor, p.care_path) {
        (true, None) => Ok(CarePath::Treating),
        (true, Some(CarePath::NotApplicable)) => Err(Refusal::rule(
            CARE_PATH_INVALID,
            "care_path",
            "a doctor's sheet says where it stands in the care path",
        )),
        (true, Some(c)) => Ok(c),
        (false, None | Some(CarePath::NotApplicable)) => Ok(CarePath::NotApplicable),
        (false, Some(_)) => Err(Refusal::rule(
            CARE_PATH_INVALID,
            "care_path",
            "the care path applies to doctors only",
        )),
    }
}

/// Step 10: the tiers payant — compulsory AMO under CSS, maternity, AT/MP and ALD; AMC when the
/// card's AMC (open on every date of care) pays the practitioner directly, or under CSS — and
/// degraded mode in AMO tiers payant only. Returns it with the card's AMC open on those dates.
pub(super) fn tiers_payant<'a>(
    p: &FseCreateParams,
    vitale: Option<&'a VitaleData>,
    dates: &[NaiveDate],
    cover: &Cover,
    mode: Mode,
) -> Result<(TiersPayant, Option<&'a Amc>), Refusal> {
    let amc = vitale
        .and_then(|v| v.amc.as_ref())
        .filter(|a| dates.iter().all(|d| in_range(&a.from, &a.until, *d)));
    // Compulsory AMO tiers payant: CSS, maternity, AT/MP, ALD care (CSS art. L160-14,
    // L861-3, L432-1).
    let compulsory = cover.css || cover.kind != CoverKind::Maladie || cover.ald;
    let amc_offers = cover.css || amc.is_some_and(|a| a.tiers_payant && a.direct);
    let tiers_payant = match &p.tiers_payant {
        None => TiersPayant {
            amo: compulsory,
            amc: amc_offers,
            amc_number: amc.map(|a| a.number.clone()),
        },
        Some(t) => {
            if compulsory && !t.amo {
                return Err(Refusal::rule(
                    TIERS_PAYANT_REQUIRED,
                    "tiers_payant.amo",
                    "the AMO tiers payant is compulsory under CSS, maternity, AT/MP and ALD",
                ));
            }
            if t.amc && !amc_offers {
                return Err(Refusal::rule(
                    AMC_TIERS_PAYANT_UNAVAILABLE,
                    "tiers_payant.amc",
                    "the Vitale card shows no AMC paying the practitioner directly at the date of care",
                ));
            }
            TiersPayant {
                amo: t.amo,
                amc: t.amc,
                amc_number: amc.map(|a| a.number.clone()),
            }
        }
    };
    if mode == Mode::Degraded && !tiers_payant.amo {
        return Err(Refusal::rule(
            DEGRADED_OUTSIDE_TIERS_PAYANT,
            "degraded",
            "degraded mode is accepted in AMO tiers payant only",
        ));
    }
    Ok((tiers_payant, amc))
}

/// Step 11: the sending deadline, which runs from the last date of care (`dates[last]`: a
/// series of acts — physiotherapy, nursing — is billed on one sheet once it is over) and must
/// not have passed.
pub(super) fn deadline(
    dates: &[NaiveDate],
    last: usize,
    tiers_payant: &TiersPayant,
    today: NaiveDate,
) -> Result<NaiveDate, Refusal> {
    let payment = if tiers_payant.amo {
        calendar::Payment::TiersPayant
    } else {
        calendar::Payment::PatientPaid
    };
    let deadline = calendar::sending_deadline(dates[last], payment, calendar::Region::Metropole)
        .ok_or_else(|| {
            Refusal::invalid(format!("acts[{last}].date"), "out of the calendar's range")
        })?;
    if deadline < today {
        return Err(Refusal::rule(
            PAST_DEADLINE,
            format!("acts[{last}].date"),
            format!(
                "the sending deadline of care of {} was {}",
                ymd(dates[last]),
                ymd(deadline)
            ),
        ));
    }
    Ok(deadline)
}
