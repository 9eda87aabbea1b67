//! Pricing rules: a pure function of (act, beneficiary, date) to amounts in
//! integer cents. This first table covers the consultation and the main
//! auxiliary letter keys; `domain.md` gives the public figures used.

use chrono::NaiveDate;

use crate::fse::Amounts;

/// Participation forfaitaire per consultation since 15 May 2024, cents.
pub const PF_CENTS: u64 = 200;

/// A tariff entry: price of coefficient 1, AMO rate, whether the PF applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tariff {
    /// Letter key or code.
    pub code: &'static str,
    /// First day in force.
    pub from: (i32, u32, u32),
    /// Unit price in cents.
    pub unit_cents: u64,
    /// AMO rate in percent, in the care path.
    pub rate: u8,
    /// Participation forfaitaire applies (doctors' acts).
    pub pf: bool,
}

/// The table in force (newest entries last per code).
pub const TARIFFS: &[Tariff] = &[
    // G: 26.50 € then 30 € from 22 Dec 2024 (convention médicale 2024).
    Tariff {
        code: "G",
        from: (2023, 12, 1),
        unit_cents: 2650,
        rate: 70,
        pf: true,
    },
    Tariff {
        code: "G",
        from: (2024, 12, 22),
        unit_cents: 3000,
        rate: 70,
        pf: true,
    },
    Tariff {
        code: "APC",
        from: (2024, 12, 22),
        unit_cents: 6000,
        rate: 70,
        pf: true,
    },
    Tariff {
        code: "AMI",
        from: (2023, 1, 1),
        unit_cents: 315,
        rate: 60,
        pf: false,
    },
    Tariff {
        code: "AMK",
        from: (2023, 1, 1),
        unit_cents: 215,
        rate: 60,
        pf: false,
    },
];

/// Why an act cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// No tariff for this code at this date.
    #[error("unknown act {code} at {date}")]
    UnknownAct {
        /// The code.
        code: String,
        /// The date.
        date: NaiveDate,
    },
}

/// The tariff of `code` in force on `date`.
pub fn tariff(code: &str, date: NaiveDate) -> Option<&'static Tariff> {
    TARIFFS
        .iter()
        .filter(|t| t.code == code)
        .rfind(|t| NaiveDate::from_ymd_opt(t.from.0, t.from.1, t.from.2).is_some_and(|f| f <= date))
}

/// Age in whole years on `date`.
pub fn age_on(birth: NaiveDate, date: NaiveDate) -> i32 {
    date.years_since(birth).map_or(0, |y| y as i32)
}

/// Prices one act (coefficient in hundredths, quantity) for a beneficiary born on `birth`.
pub fn price_act(
    code: &str,
    coefficient: u32,
    quantity: u32,
    date: NaiveDate,
    birth: NaiveDate,
) -> Result<Amounts, RuleError> {
    let t = tariff(code, date).ok_or_else(|| RuleError::UnknownAct {
        code: code.to_string(),
        date,
    })?;
    let base = t.unit_cents * u64::from(coefficient) * u64::from(quantity) / 100;
    let amo_gross = base * u64::from(t.rate) / 100;
    let pf = if t.pf && age_on(birth, date) >= 18 {
        PF_CENTS.min(amo_gross)
    } else {
        0
    };
    let amo = amo_gross - pf;
    Ok(Amounts {
        total_cents: base,
        base_cents: base,
        amo_rate: t.rate,
        amo_cents: amo,
        pf_cents: pf,
        patient_cents: base - amo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    #[test]
    fn gp_consultation_worked_example() {
        // G 30 € → 70 % = 21 € − 2 € PF = 19 € AMO; the patient pays 11 €.
        let a = price_act("G", 100, 1, d(2026, 11, 22), d(1985, 5, 12)).unwrap();
        assert_eq!(
            (a.base_cents, a.amo_cents, a.pf_cents, a.patient_cents),
            (3000, 1900, 200, 1100)
        );
    }

    #[test]
    fn minors_are_exempt_and_old_tariff_applies_before_its_date() {
        let a = price_act("G", 100, 1, d(2026, 11, 22), d(2015, 1, 1)).unwrap();
        assert_eq!((a.amo_cents, a.pf_cents), (2100, 0));
        let a = price_act("G", 100, 1, d(2024, 12, 21), d(1985, 1, 1)).unwrap();
        assert_eq!(a.base_cents, 2650);
        assert!(price_act("ZZZ", 100, 1, d(2026, 1, 1), d(1985, 1, 1)).is_err());
    }
}
