//! Steps 12 to 14 of a sheet: each act's prescription and excess fee, the prices
//! (`rules::price`), the amounts the practice software expects, and the sheet's act lines.

use chrono::NaiveDate;

use super::{
    national_id_is_valid, parse_date, ymd, Refusal, AMOUNTS_INCONSISTENT, EXCESS_NOT_ALLOWED,
    PRESCRIBER_INVALID, PRESCRIPTION_MISSING,
};
use crate::api::{ActRequest, FseCreateParams};
use crate::cards::Situation;
use crate::fse::{Act, Amounts};
use crate::rules;

/// Step 12: an act billed on a prescription names its prescriber (a valid national id, a date
/// on or before the care); in sector 1 an excess fee needs a modifier that allows it. An act
/// the tables do not price for this profession is left to step 13, which names it.
pub(super) fn check_prescriptions(
    acts: &[ActRequest],
    dates: &[NaiveDate],
    profession: &str,
    situation: &Situation,
    tables: &rules::Tables,
) -> Result<(), Refusal> {
    for (i, (a, date)) in acts.iter().zip(dates).enumerate() {
        let Some((tariff, _)) = tables
            .act(&a.code, *date)
            .filter(|(t, _)| t.professions.iter().any(|p| p == profession))
        else {
            continue; // priced below, which names the unknown or forbidden act
        };
        match (&a.prescriber, tariff.prescription) {
            (None, true) => {
                return Err(Refusal::rule(
                    PRESCRIPTION_MISSING,
                    format!("acts[{i}].prescriber"),
                    format!(
                        "act {} is billed on a prescription: name its prescriber",
                        a.code
                    ),
                ))
            }
            (Some(pr), _) => {
                if !national_id_is_valid(&pr.national_id) {
                    return Err(Refusal::rule(
                        PRESCRIBER_INVALID,
                        format!("acts[{i}].prescriber.national_id"),
                        "RPPS (8 + 11 digits, Luhn key) or ADELI (0 + 9)",
                    ));
                }
                match parse_date(&pr.date) {
                    Some(d) if d <= *date => {}
                    _ => {
                        return Err(Refusal::rule(
                            PRESCRIBER_INVALID,
                            format!("acts[{i}].prescriber.date"),
                            "the prescription's date (YYYYMMDD), on or before the care",
                        ))
                    }
                }
            }
            (None, false) => {}
        }
        if a.excess_cents > 0
            && tariff.family != rules::Family::HorsNomenclature
            && situation.sector == 1
            && !a
                .modifiers
                .iter()
                .any(|m| tables.modifier(m).is_some_and(|m| m.allows_excess))
        {
            return Err(Refusal::rule(
                EXCESS_NOT_ALLOWED,
                format!("acts[{i}].excess_cents"),
                "in sector 1 an excess fee needs the patient's particular demand (modifier DE)",
            ));
        }
    }
    Ok(())
}

/// Step 13's input: the acts as the pricing rules take them, each with its date of care.
pub(super) fn lines(acts: &[ActRequest], dates: &[NaiveDate]) -> Vec<rules::ActLine> {
    acts.iter()
        .zip(dates)
        .map(|(a, date)| rules::ActLine {
            code: a.code.clone(),
            coefficient: a.coefficient,
            quantity: a.quantity,
            date: *date,
            excess_cents: a.excess_cents,
            modifiers: a.modifiers.clone(),
        })
        .collect()
}

/// Step 14: each amount the practice software expects must be the one fsed computes.
pub(super) fn check_expected(p: &FseCreateParams, amounts: &Amounts) -> Result<(), Refusal> {
    let Some(e) = &p.expected else {
        return Ok(());
    };
    let checks = [
        ("expected.total_cents", e.total_cents, amounts.total_cents),
        ("expected.amo_cents", e.amo_cents, amounts.amo_cents),
        ("expected.amc_cents", e.amc_cents, amounts.amc_cents),
        (
            "expected.patient_cents",
            e.patient_cents,
            amounts.patient_cents,
        ),
        ("expected.due_cents", e.due_cents, amounts.due_cents),
    ];
    for (field, expected, computed) in checks {
        if let Some(x) = expected {
            if x != computed {
                return Err(Refusal::rule(
                    AMOUNTS_INCONSISTENT,
                    field,
                    format!("fsed computes {computed} cents, the request says {x}"),
                ));
            }
        }
    }
    Ok(())
}

/// The sheet's act lines: each priced line (moved, not copied) with its prescriber and prices.
pub(super) fn sheet_acts(
    acts: &[ActRequest],
    lines: Vec<rules::ActLine>,
    priced: &[rules::PricedAct],
) -> Vec<Act> {
    acts.iter()
        .zip(lines)
        .zip(priced)
        .map(|((a, line), x)| Act {
            code: line.code,
            coefficient: line.coefficient,
            quantity: line.quantity,
            date: ymd(line.date),
            modifiers: line.modifiers,
            prescriber: a.prescriber.clone(),
            base_cents: x.base_cents,
            excess_cents: line.excess_cents,
            rate: x.rate,
            amo_cents: x.amo_cents,
            pf_cents: x.pf_cents,
        })
        .collect()
}
