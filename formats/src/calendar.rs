//! The French public-holiday calendar, computed (Easter by the Gregorian
//! computus, the fixed days by law: Code du travail art. L3133-1), working
//! days, and the sending deadline of a care sheet: 3 working days after the
//! date of care when the patient paid the practitioner, 8 in tiers payant.
//! Working days (jours ouvrés) are Monday to Friday, public holidays
//! excluded; the date of care itself does not count.

use chrono::{Datelike, Days, NaiveDate, Weekday};

/// Where the practice is: Alsace-Moselle has two more public holidays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Metropolitan France and overseas departments (their abolition-of-slavery days aside).
    Metropole,
    /// Bas-Rhin, Haut-Rhin, Moselle: Good Friday and 26 December too (Code du travail art. L3134-13).
    AlsaceMoselle,
}

/// Who paid the practitioner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    /// The patient paid: the sheet must leave within 3 working days.
    PatientPaid,
    /// Tiers payant: the insurers pay; the sheet must leave within 8 working days.
    TiersPayant,
}

/// Easter Sunday of `year` (anonymous Gregorian algorithm, Meeus/Jones/Butcher).
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let month = (h + l - 7 * m + 114).div_euclid(31);
    let day = (h + l - 7 * m + 114).rem_euclid(31) + 1;
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}

/// The public holidays of `year`, in date order, with their French names.
pub fn public_holidays(year: i32, region: Region) -> Vec<(NaiveDate, &'static str)> {
    let mut out = Vec::with_capacity(13);
    let fixed = [
        (1, 1, "Jour de l'an"),
        (5, 1, "Fête du travail"),
        (5, 8, "Victoire 1945"),
        (7, 14, "Fête nationale"),
        (8, 15, "Assomption"),
        (11, 1, "Toussaint"),
        (11, 11, "Armistice 1918"),
        (12, 25, "Noël"),
    ];
    for (m, d, name) in fixed {
        if let Some(date) = NaiveDate::from_ymd_opt(year, m, d) {
            out.push((date, name));
        }
    }
    if let Some(easter) = easter_sunday(year) {
        let mut movable = vec![
            (1i64, "Lundi de Pâques"),
            (39, "Ascension"),
            (50, "Lundi de Pentecôte"),
        ];
        if region == Region::AlsaceMoselle {
            movable.push((-2, "Vendredi saint"));
        }
        for (offset, name) in movable {
            let date = if offset >= 0 {
                easter.checked_add_days(Days::new(offset as u64))
            } else {
                easter.checked_sub_days(Days::new(offset.unsigned_abs()))
            };
            if let Some(date) = date {
                out.push((date, name));
            }
        }
    }
    if region == Region::AlsaceMoselle {
        if let Some(date) = NaiveDate::from_ymd_opt(year, 12, 26) {
            out.push((date, "Saint-Étienne"));
        }
    }
    out.sort();
    out
}

/// Whether `d` is a public holiday.
pub fn is_public_holiday(d: NaiveDate, region: Region) -> bool {
    public_holidays(d.year(), region)
        .iter()
        .any(|(h, _)| *h == d)
}

/// Whether `d` is a working day: Monday to Friday, not a public holiday.
pub fn is_working_day(d: NaiveDate, region: Region) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !is_public_holiday(d, region)
}

/// The `n`-th working day strictly after `from`; `None` out of the calendar's range.
pub fn add_working_days(from: NaiveDate, n: u32, region: Region) -> Option<NaiveDate> {
    let mut d = from;
    let mut left = n;
    while left > 0 {
        d = d.succ_opt()?;
        if is_working_day(d, region) {
            left -= 1;
        }
    }
    Some(d)
}

/// The last day to send a sheet for care given on `act_date`.
pub fn sending_deadline(
    act_date: NaiveDate,
    payment: Payment,
    region: Region,
) -> Option<NaiveDate> {
    let n = match payment {
        Payment::PatientPaid => 3,
        Payment::TiersPayant => 8,
    };
    add_working_days(act_date, n, region)
}

/// Whether a sheet for care on `act_date` is past its deadline on `today`.
pub fn is_late(act_date: NaiveDate, payment: Payment, region: Region, today: NaiveDate) -> bool {
    sending_deadline(act_date, payment, region).is_none_or(|d| today > d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    #[test]
    fn easter_dates() {
        for (y, m, dd) in [
            (2000, 4, 23),
            (2019, 4, 21),
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2027, 3, 28),
            (2038, 4, 25),
        ] {
            assert_eq!(easter_sunday(y), Some(d(y, m, dd)), "{y}");
        }
    }

    #[test]
    fn the_eleven_holidays_of_2026() {
        let got: Vec<NaiveDate> = public_holidays(2026, Region::Metropole)
            .into_iter()
            .map(|(h, _)| h)
            .collect();
        assert_eq!(
            got,
            vec![
                d(2026, 1, 1),
                d(2026, 4, 6),
                d(2026, 5, 1),
                d(2026, 5, 8),
                d(2026, 5, 14),
                d(2026, 5, 25),
                d(2026, 7, 14),
                d(2026, 8, 15),
                d(2026, 11, 1),
                d(2026, 11, 11),
                d(2026, 12, 25),
            ]
        );
        assert_eq!(public_holidays(2026, Region::AlsaceMoselle).len(), 13);
        assert!(is_public_holiday(d(2026, 4, 3), Region::AlsaceMoselle));
        assert!(!is_public_holiday(d(2026, 4, 3), Region::Metropole));
    }

    #[test]
    fn deadlines_skip_weekends_and_holidays() {
        let m = Region::Metropole;
        // Friday 20 Nov 2026, patient paid: Mon 23, Tue 24, Wed 25.
        assert_eq!(
            sending_deadline(d(2026, 11, 20), Payment::PatientPaid, m),
            Some(d(2026, 11, 25))
        );
        // Wednesday 13 May 2026: Thursday 14 is Ascension; Fri 15, Mon 18, Tue 19.
        assert_eq!(
            sending_deadline(d(2026, 5, 13), Payment::PatientPaid, m),
            Some(d(2026, 5, 19))
        );
        // Wednesday 23 Dec 2026, tiers payant: 24, 28, 29, 30, 31 Dec, 4, 5, 6 Jan.
        assert_eq!(
            sending_deadline(d(2026, 12, 23), Payment::TiersPayant, m),
            Some(d(2027, 1, 6))
        );
        assert!(is_late(
            d(2026, 11, 20),
            Payment::PatientPaid,
            m,
            d(2026, 11, 26)
        ));
        assert!(!is_late(
            d(2026, 11, 20),
            Payment::TiersPayant,
            m,
            d(2026, 11, 26)
        ));
    }

    proptest! {
        #[test]
        fn deadlines_hold_their_working_days(days in 0u64..40_000, tiers_payant: bool) {
            let act = d(1990, 1, 1) + Days::new(days);
            let payment = if tiers_payant { Payment::TiersPayant } else { Payment::PatientPaid };
            let n = if tiers_payant { 8 } else { 3 };
            let deadline = sending_deadline(act, payment, Region::Metropole).unwrap();
            prop_assert!(deadline > act);
            prop_assert!(is_working_day(deadline, Region::Metropole));
            let between = act.iter_days().skip(1).take_while(|x| *x <= deadline)
                .filter(|x| is_working_day(*x, Region::Metropole)).count();
            prop_assert_eq!(between, n);
            prop_assert!(sending_deadline(act, Payment::TiersPayant, Region::Metropole).unwrap()
                >= sending_deadline(act, Payment::PatientPaid, Region::Metropole).unwrap());
        }

        #[test]
        fn any_year_is_safe(year: i32) {
            let _ = easter_sunday(year);
            let _ = public_holidays(year, Region::AlsaceMoselle);
        }
    }
}
