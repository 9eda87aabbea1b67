//! Verification of a sheet already built: its shares re-priced against the tables, as an
//! insurer does on a sheet it receives.

use chrono::NaiveDate;

use crate::rules::{price, ActLine, Context, PfHistory, Tables};

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
    use crate::fse::CareSheet;

    #[test]
    fn an_insurer_re_prices_a_sheet_and_finds_a_wrong_share() {
        let t = Tables::builtin();
        let good = CareSheet::sample(1);
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
}
