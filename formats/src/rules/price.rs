//! Pricing one sheet's acts: each line checked against the tables, its rate, its AMO share
//! and its participation forfaitaire within the caps, then the sheet's sums.

use chrono::{Datelike, NaiveDate};

use super::{
    age_on, percent, ActLine, CarePath, Context, CoverKind, FamilyRule, PfHistory, Price, Priced,
    PricedAct, RuleError, Tables, MAX_EXCESS_CENTS,
};

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
        let (p, fam, added) = line_tariff(index, line, profession, tables)?;
        let unit_coef = percent(p.unit_cents, u64::from(line.coefficient));
        let base = unit_coef
            .saturating_mul(u64::from(line.quantity))
            .saturating_add(added);
        let rate = rate(ctx, fam, line.date);
        let h = &tables.heavy_act;
        let heavy = rate > 0
            && rate < 100
            && (unit_coef >= h.threshold_cents || line.coefficient >= h.threshold_coefficient);
        let amo = if heavy {
            base.saturating_sub(h.flat_cents)
        } else {
            percent(base, u64::from(rate))
        };
        let pf_cents = participation(ctx, fam, line.date, amo, tables, history, &mut this_sheet);
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

/// One line against the tables: its quantity and coefficient in range, its code priced on its
/// date for this profession, its family's rates, its excess fee within bounds, its modifiers
/// known for this profession. Returns the price in force, the family's rates and what the
/// modifiers add to the base.
fn line_tariff<'t>(
    index: usize,
    line: &ActLine,
    profession: &str,
    tables: &'t Tables,
) -> Result<(&'t Price, &'t FamilyRule, u64), RuleError> {
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
    Ok((p, fam, added))
}

/// The AMO rate of a line on `date`: 100 % under maternity or AT/MP cover and for ALD care
/// (of a reimbursed family), else the family's rate, or its out-of-path rate.
fn rate(ctx: &Context, fam: &FamilyRule, date: NaiveDate) -> u8 {
    let full_cover = ctx.cover != CoverKind::Maladie || (ctx.ald && fam.rate > 0);
    // Out of the care path lowers the rate from 16 years of age only (CSS art. L162-5-3).
    let out_of_path = ctx.care_path == CarePath::OutOfPath && age_on(ctx.birth_date, date) >= 16;
    if full_cover {
        100
    } else if out_of_path {
        fam.out_of_path_rate
    } else {
        fam.rate
    }
}

/// The participation forfaitaire a line on `date` withholds from its AMO share `amo`, within
/// what the history and this sheet's earlier lines (`this_sheet`, to which it is added) leave
/// of the caps; none for minors, the CSS, maternity and AT/MP, or before its date.
fn participation(
    ctx: &Context,
    fam: &FamilyRule,
    date: NaiveDate,
    amo: u64,
    tables: &Tables,
    history: &dyn Fn(NaiveDate) -> PfHistory,
    this_sheet: &mut Vec<(NaiveDate, u64)>,
) -> u64 {
    let pf = &tables.participation;
    let exempt = age_on(ctx.birth_date, date) < 18 || ctx.css || ctx.cover != CoverKind::Maladie;
    if !fam.participation || exempt || pf.from_date.is_none_or(|f| f > date) {
        return 0;
    }
    let mut pf_cents = 0;
    let before = history(date);
    let sheet_day = this_sheet.iter().filter(|(d, _)| *d == date).count();
    let sheet_year: u64 = this_sheet
        .iter()
        .filter(|(d, _)| d.year() == date.year())
        .map(|(_, c)| c)
        .sum();
    let day_count = u64::from(before.same_day_with_professional).saturating_add(sheet_day as u64);
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
        this_sheet.push((date, pf_cents));
    }
    pf_cents
}
