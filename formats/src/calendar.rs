//! The French public-holiday calendar and the sending deadline of a care
//! sheet.
//!
//! The calendar is computed, not listed: Easter by the Gregorian computus,
//! the movable days from Easter, the fixed days by law (Code du travail
//! art. L3133-1; art. L3134-13 adds Good Friday and 26 December in
//! Alsace-Moselle). On it rest working days (jours ouvrés: Monday to Friday,
//! public holidays excluded, Saturdays excluded too) and the sending
//! deadline of an electronic care sheet (Code de la sécurité sociale
//! art. R161-47): 3 working days when the patient paid the practitioner,
//! 8 in tiers payant. The date of care itself does not count.
//!
//! Every function is total: a date outside chrono's range gives `None` (or
//! no holiday), never a panic.

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

/// Easter Sunday of `year` in the Gregorian calendar (anonymous Gregorian
/// algorithm, Meeus/Jones/Butcher); `None` outside chrono's range.
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

/// The public holidays of `year` in `region`, in date order, with their
/// French names: 11 in Metropole, 13 in Alsace-Moselle; empty or partial
/// only for years at the edge of chrono's range.
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

/// Whether `d` is a public holiday in `region` — the days [`public_holidays`] lists, found
/// without building the list: fixed dates by month and day, movable feasts by their distance
/// to Easter (they fall between March and June).
pub fn is_public_holiday(d: NaiveDate, region: Region) -> bool {
    let alsace = region == Region::AlsaceMoselle;
    match (d.month(), d.day()) {
        (1, 1) | (5, 1) | (5, 8) | (7, 14) | (8, 15) | (11, 1) | (11, 11) | (12, 25) => true,
        (12, 26) => alsace,
        (3..=6, _) => easter_sunday(d.year()).is_some_and(|easter| {
            let offset = (d - easter).num_days();
            matches!(offset, 1 | 39 | 50) || (alsace && offset == -2)
        }),
        _ => false,
    }
}

/// Whether `d` is a working day: Monday to Friday, not a public holiday.
pub fn is_working_day(d: NaiveDate, region: Region) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !is_public_holiday(d, region)
}

/// The `n`-th working day strictly after `from` (`from` itself never counts;
/// `n == 0` gives `from`); `None` when it would be past chrono's last date.
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

/// The last day to send a sheet for care given on `act_date`; `None` when
/// that day is past chrono's last date.
///
/// The rule (Code de la sécurité sociale art. R161-47): an electronic care
/// sheet leaves within 3 working days when the patient paid the
/// practitioner, within 8 in tiers payant. The count is in working days
/// (jours ouvrés): Monday to Friday, Saturdays, Sundays and the public
/// holidays of `region` excluded. The date of care itself does not count:
/// the deadline is the 3rd (or 8th) working day strictly after `act_date`,
/// and the sheet is on time when sent on that day. The text starts the
/// count from the date of the acts and of the payment; this function takes
/// the date of care, which is the date of payment at the practice.
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

/// Whether a sheet for care on `act_date` is past its deadline on `today`:
/// late when `today` is after [`sending_deadline`], on time on the deadline
/// itself. A deadline past chrono's last date lies after every `today`, so
/// it is never late.
pub fn is_late(act_date: NaiveDate, payment: Payment, region: Region, today: NaiveDate) -> bool {
    sending_deadline(act_date, payment, region).is_some_and(|d| today > d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: Region = Region::Metropole;
    const AM: Region = Region::AlsaceMoselle;
    const PP: Payment = Payment::PatientPaid;
    const TP: Payment = Payment::TiersPayant;

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
        assert_eq!(
            public_holidays(2026, M),
            vec![
                (d(2026, 1, 1), "Jour de l'an"),
                (d(2026, 4, 6), "Lundi de Pâques"),
                (d(2026, 5, 1), "Fête du travail"),
                (d(2026, 5, 8), "Victoire 1945"),
                (d(2026, 5, 14), "Ascension"),
                (d(2026, 5, 25), "Lundi de Pentecôte"),
                (d(2026, 7, 14), "Fête nationale"),
                (d(2026, 8, 15), "Assomption"),
                (d(2026, 11, 1), "Toussaint"),
                (d(2026, 11, 11), "Armistice 1918"),
                (d(2026, 12, 25), "Noël"),
            ]
        );
    }

    #[test]
    fn alsace_moselle_adds_good_friday_and_26_december() {
        let metropole = public_holidays(2026, M);
        let alsace = public_holidays(2026, AM);
        assert_eq!(alsace.len(), 13);
        let extra: Vec<_> = alsace
            .iter()
            .filter(|h| !metropole.contains(h))
            .copied()
            .collect();
        assert_eq!(
            extra,
            vec![
                (d(2026, 4, 3), "Vendredi saint"),
                (d(2026, 12, 26), "Saint-Étienne"),
            ]
        );
        assert!(is_public_holiday(d(2026, 4, 3), AM));
        assert!(!is_public_holiday(d(2026, 4, 3), M));
        assert!(is_working_day(d(2026, 4, 3), M));
        assert!(!is_working_day(d(2026, 4, 3), AM));
    }

    #[test]
    fn working_days() {
        assert!(is_working_day(d(2026, 11, 20), M)); // Friday
        assert!(!is_working_day(d(2026, 11, 21), M)); // Saturday
        assert!(!is_working_day(d(2026, 11, 22), M)); // Sunday
        assert!(!is_working_day(d(2026, 11, 11), M)); // Wednesday, Armistice
        assert_eq!(
            add_working_days(d(2026, 11, 21), 0, M),
            Some(d(2026, 11, 21))
        );
        assert_eq!(
            add_working_days(d(2026, 11, 21), 1, M),
            Some(d(2026, 11, 23))
        );
    }

    #[test]
    fn deadline_across_a_weekend() {
        // Friday 20 Nov 2026. Patient paid: Mon 23, Tue 24, Wed 25.
        assert_eq!(
            sending_deadline(d(2026, 11, 20), PP, M),
            Some(d(2026, 11, 25))
        );
        // Tiers payant: 23, 24, 25, 26, 27, Mon 30, Tue 1 and Wed 2 Dec.
        assert_eq!(
            sending_deadline(d(2026, 11, 20), TP, M),
            Some(d(2026, 12, 2))
        );
        // Care on a Saturday: the count starts on Monday.
        assert_eq!(
            sending_deadline(d(2026, 11, 21), PP, M),
            Some(d(2026, 11, 25))
        );
    }

    #[test]
    fn deadline_across_the_ascension_bridge() {
        // Wednesday 13 May 2026; Thursday 14 is Ascension, Friday 15 is worked.
        // Patient paid: Fri 15, Mon 18, Tue 19.
        assert_eq!(
            sending_deadline(d(2026, 5, 13), PP, M),
            Some(d(2026, 5, 19))
        );
        // Tiers payant: 15, 18, 19, 20, 21, 22, (Mon 25 Pentecôte) 26, 27.
        assert_eq!(
            sending_deadline(d(2026, 5, 13), TP, M),
            Some(d(2026, 5, 27))
        );
    }

    #[test]
    fn deadline_across_christmas_and_new_year() {
        // Wednesday 23 Dec 2026. Patient paid: Thu 24, (Fri 25) Mon 28, Tue 29.
        assert_eq!(
            sending_deadline(d(2026, 12, 23), PP, M),
            Some(d(2026, 12, 29))
        );
        // Tiers payant: 24, 28, 29, 30, 31, (Fri 1 Jan) Mon 4, Tue 5, Wed 6.
        assert_eq!(
            sending_deadline(d(2026, 12, 23), TP, M),
            Some(d(2027, 1, 6))
        );
    }

    #[test]
    fn alsace_moselle_deadlines_are_later_around_its_holidays() {
        // Wednesday 24 Dec 2025; 25 is Thursday, 26 Friday.
        // Patient paid, Metropole: Fri 26, Mon 29, Tue 30; Alsace-Moselle: 29, 30, 31.
        // Tiers payant, Metropole: 26, 29, 30, 31, (Thu 1 Jan) 2, 5, 6, 7;
        // Alsace-Moselle: 29, 30, 31, 2, 5, 6, 7, 8.
        assert_eq!(
            sending_deadline(d(2025, 12, 24), PP, M),
            Some(d(2025, 12, 30))
        );
        assert_eq!(
            sending_deadline(d(2025, 12, 24), PP, AM),
            Some(d(2025, 12, 31))
        );
        assert_eq!(
            sending_deadline(d(2025, 12, 24), TP, M),
            Some(d(2026, 1, 7))
        );
        assert_eq!(
            sending_deadline(d(2025, 12, 24), TP, AM),
            Some(d(2026, 1, 8))
        );
        // Wednesday 1 April 2026; Good Friday 3, Easter Monday 6.
        // Metropole: Thu 2, Fri 3, Tue 7; Alsace-Moselle: Thu 2, Tue 7, Wed 8.
        assert_eq!(sending_deadline(d(2026, 4, 1), PP, M), Some(d(2026, 4, 7)));
        assert_eq!(sending_deadline(d(2026, 4, 1), PP, AM), Some(d(2026, 4, 8)));
    }

    #[test]
    fn late_only_after_the_deadline_day() {
        let act = d(2026, 11, 20);
        assert!(!is_late(act, PP, M, act));
        assert!(!is_late(act, PP, M, d(2026, 11, 25)));
        assert!(is_late(act, PP, M, d(2026, 11, 26)));
        assert!(!is_late(act, TP, M, d(2026, 11, 26)));
        assert!(!is_late(act, TP, M, d(2026, 12, 2)));
        assert!(is_late(act, TP, M, d(2026, 12, 3)));
    }

    #[test]
    fn the_end_of_the_calendar_gives_none() {
        let last = NaiveDate::MAX;
        assert_eq!(sending_deadline(last, PP, M), None);
        assert_eq!(add_working_days(last, 1, AM), None);
        assert_eq!(add_working_days(last, 0, AM), Some(last));
        assert!(!is_late(last, TP, M, last));
        let _ = is_working_day(last, AM);
        let _ = is_working_day(NaiveDate::MIN, AM);
        assert!(sending_deadline(NaiveDate::MIN, TP, AM).is_some());
    }

    #[test]
    fn holiday_test_agrees_with_the_list_every_day_of_a_century() {
        for region in [Region::Metropole, Region::AlsaceMoselle] {
            let mut d = NaiveDate::from_ymd_opt(1950, 1, 1).unwrap();
            let end = NaiveDate::from_ymd_opt(2060, 1, 1).unwrap();
            let mut listed = public_holidays(d.year(), region);
            while d < end {
                if d.ordinal() == 1 {
                    listed = public_holidays(d.year(), region);
                }
                assert_eq!(
                    is_public_holiday(d, region),
                    listed.iter().any(|(h, _)| *h == d),
                    "{d} {region:?}"
                );
                d = d.succ_opt().unwrap();
            }
        }
    }

    fn region(alsace: bool) -> Region {
        if alsace {
            AM
        } else {
            M
        }
    }

    proptest! {
        #[test]
        fn deadlines_hold_their_working_days(
            days in 0u64..(d(2100, 1, 1) - d(1990, 1, 1)).num_days().unsigned_abs(),
            tiers_payant: bool,
            alsace: bool,
        ) {
            let act = d(1990, 1, 1) + Days::new(days);
            let region = region(alsace);
            let (payment, n) = if tiers_payant { (TP, 8) } else { (PP, 3) };
            let deadline = sending_deadline(act, payment, region).unwrap();
            prop_assert!(deadline > act);
            prop_assert!(is_working_day(deadline, region));
            let between = act
                .iter_days()
                .skip(1)
                .take_while(|x| *x <= deadline)
                .filter(|x| is_working_day(*x, region))
                .count();
            prop_assert_eq!(between, n);
            prop_assert!(
                sending_deadline(act, TP, region).unwrap()
                    >= sending_deadline(act, PP, region).unwrap()
            );
            prop_assert!(!is_late(act, payment, region, deadline));
            prop_assert!(is_late(act, payment, region, deadline + Days::new(1)));
        }

        #[test]
        fn easter_is_a_sunday_between_22_march_and_25_april(year in 1583i32..10_000) {
            let easter = easter_sunday(year).unwrap();
            prop_assert_eq!(easter.weekday(), Weekday::Sun);
            prop_assert!(easter >= d(year, 3, 22) && easter <= d(year, 4, 25));
        }

        #[test]
        fn any_year_is_safe(year: i32, alsace: bool) {
            let region = region(alsace);
            let _ = easter_sunday(year);
            let holidays = public_holidays(year, region);
            prop_assert!(holidays.windows(2).all(|w| w[0] < w[1]));
            if let Some(first) = NaiveDate::from_ymd_opt(year, 1, 1) {
                let _ = is_working_day(first, region);
                let _ = sending_deadline(first, Payment::TiersPayant, region);
            }
        }
    }
}
