//! Cases worked out by hand on the 2026–2027 calendar (Easter 2026: Sunday 5 April; Monday
//! 7 December 2026 is a Monday).

use super::*;
use crate::calendar::Region;

const M: Region = Region::Metropole;
const AM: Region = Region::AlsaceMoselle;

fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, dd).unwrap()
}

fn paid(arl: NaiveDate, on: NaiveDate, amo: u64) -> LateCharge {
    // `today` is later than every payment here; it must not matter for a paid sheet.
    assess(arl, Settlement::Paid(on), d(2030, 1, 1), amo, M)
}

#[test]
fn arl_on_the_friday_before_easter() {
    // ARL Friday 3 April 2026 (not counted). Monday 6 = Easter Monday, a holiday.
    // Tue 7 = 1, Wed 8 = 2, Thu 9 = 3, Fri 10 = 4, Mon 13 = 5, Tue 14 = 6, Wed 15 = 7,
    // Thu 16 = 8, Fri 17 = 9, (Sat 18, Sun 19), Mon 20 = 10.
    let arl = d(2026, 4, 3);
    let cases = [
        (d(2026, 4, 6), 0, LateRule::OnTime, 0),
        (d(2026, 4, 7), 1, LateRule::OnTime, 0),
        (d(2026, 4, 15), 7, LateRule::OnTime, 0),
        (d(2026, 4, 16), 8, LateRule::Flat, 100),
        (d(2026, 4, 17), 9, LateRule::Flat, 100),
        // Saturday and Sunday add nothing: still day 9.
        (d(2026, 4, 18), 9, LateRule::Flat, 100),
        (d(2026, 4, 19), 9, LateRule::Flat, 100),
        // Day 10: 10 % of 15.50 € = 1.55 €.
        (d(2026, 4, 20), 10, LateRule::Percent, 155),
    ];
    for (on, n, rule, cents) in cases {
        let c = paid(arl, on, 1550);
        assert_eq!(
            (c.working_days, c.rule, c.penalty_cents, c.overdue),
            (n, rule, cents, false),
            "paid {on}"
        );
    }
}

#[test]
fn good_friday_counts_only_outside_alsace_moselle() {
    // ARL Thursday 2 April 2026, paid Wednesday 15 April.
    // Metropole: Fri 3 = 1, Tue 7 = 2, Wed 8 = 3, Thu 9 = 4, Fri 10 = 5, Mon 13 = 6,
    // Tue 14 = 7, Wed 15 = 8 → 1 €. Alsace-Moselle: Good Friday is a holiday → 7, on time.
    let (arl, on) = (d(2026, 4, 2), d(2026, 4, 15));
    assert_eq!(working_days_between(arl, on, M), 8);
    assert_eq!(working_days_between(arl, on, AM), 7);
    let am = assess(arl, Settlement::Paid(on), on, 2000, AM);
    assert_eq!((am.rule, am.penalty_cents), (LateRule::OnTime, 0));
    assert_eq!(paid(arl, on, 2000).penalty_cents, 100);
}

#[test]
fn christmas_and_new_year() {
    // ARL Wednesday 23 December 2026. Thu 24 = 1, Fri 25 Noël, Mon 28 = 2, Tue 29 = 3,
    // Wed 30 = 4, Thu 31 = 5, Fri 1 January 2027 holiday, Mon 4 = 6, Tue 5 = 7, Wed 6 = 8,
    // Thu 7 = 9, Fri 8 = 10.
    let arl = d(2026, 12, 23);
    assert_eq!(working_days_between(arl, d(2027, 1, 5), M), 7);
    assert_eq!(working_days_between(arl, d(2027, 1, 6), M), 8);
    assert_eq!(working_days_between(arl, d(2027, 1, 7), M), 9);
    // Day 10, AMO share 26.45 €: 2.645 € rounds half up to 2.65 €.
    let c = paid(arl, d(2027, 1, 8), 2645);
    assert_eq!(
        (c.working_days, c.rule, c.penalty_cents),
        (10, LateRule::Percent, 265)
    );
    // Saturday 26 December is a weekend day anyway: Alsace-Moselle counts the same.
    assert_eq!(working_days_between(arl, d(2027, 1, 8), AM), 10);
}

#[test]
fn may_bridges() {
    // ARL Thursday 30 April 2026. Fri 1 May holiday, Mon 4 = 1, Tue 5 = 2, Wed 6 = 3,
    // Thu 7 = 4, Fri 8 May holiday, Mon 11 = 5, Tue 12 = 6, Wed 13 = 7, Thu 14 Ascension,
    // Fri 15 (the bridge, a working day) = 8, Mon 18 = 9, Tue 19 = 10.
    let arl = d(2026, 4, 30);
    assert_eq!(paid(arl, d(2026, 5, 14), 1000).rule, LateRule::OnTime);
    assert_eq!(paid(arl, d(2026, 5, 14), 1000).working_days, 7);
    assert_eq!(paid(arl, d(2026, 5, 15), 1000).rule, LateRule::Flat);
    assert_eq!(paid(arl, d(2026, 5, 18), 1000).working_days, 9);
    let c = paid(arl, d(2026, 5, 19), 1000);
    assert_eq!((c.working_days, c.penalty_cents), (10, 100)); // 10 % of 10.00 € = 1.00 €
                                                              // ARL Wednesday 13 May. Thu 14 Ascension, Fri 15 = 1, Mon 18 = 2, …, Fri 22 = 6,
                                                              // Mon 25 Whit Monday, Tue 26 = 7, Wed 27 = 8, Thu 28 = 9, Fri 29 = 10.
    let arl = d(2026, 5, 13);
    assert_eq!(working_days_between(arl, d(2026, 5, 25), M), 6);
    assert_eq!(working_days_between(arl, d(2026, 5, 26), M), 7);
    assert_eq!(working_days_between(arl, d(2026, 5, 29), M), 10);
}

#[test]
fn ten_percent_rounds_half_a_cent_up() {
    // (a + 5) / 10: 2644 → 264.4 → 264; 2645 → 264.5 → 265; 2649 → 264.9 → 265;
    // 4 → 0.4 → 0; 5 → 0.5 → 1; 0 → 0.
    for (amo, cents) in [
        (2644, 264),
        (2645, 265),
        (2649, 265),
        (4, 0),
        (5, 1),
        (0, 0),
    ] {
        assert_eq!(penalty(10, amo), (LateRule::Percent, cents), "{amo}");
    }
    assert_eq!(penalty(30, 2645), (LateRule::Percent, 265));
    assert_eq!(penalty(9, 1_000_000), (LateRule::Flat, 100));
    assert_eq!(penalty(7, 1_000_000), (LateRule::OnTime, 0));
    assert_eq!(penalty(10, u64::MAX).1, u64::MAX / 10);
}

#[test]
fn unpaid_sheets_are_overdue_after_day_seven() {
    // ARL Friday 3 April 2026 (see above): today Wed 15 = 7, Thu 16 = 8, Mon 20 = 10.
    let arl = d(2026, 4, 3);
    let on = |today| assess(arl, Settlement::Unpaid, today, 2645, M);
    let c = on(d(2026, 4, 15));
    assert_eq!((c.working_days, c.overdue, c.penalty_cents), (7, false, 0));
    let c = on(d(2026, 4, 16));
    assert_eq!(
        (c.working_days, c.overdue, c.rule, c.penalty_cents),
        (8, true, LateRule::Flat, 100)
    );
    let c = on(d(2026, 4, 20));
    assert_eq!(
        (c.working_days, c.overdue, c.penalty_cents),
        (10, true, 265)
    );
    // Refused: nothing owed, never overdue.
    let c = assess(arl, Settlement::Refused, d(2026, 5, 20), 2645, M);
    assert_eq!(
        (c.rule, c.penalty_cents, c.overdue),
        (LateRule::Refused, 0, false)
    );
    // A payment dated before its ARL counts no day.
    assert_eq!(paid(arl, d(2026, 4, 1), 2645).working_days, 0);
}

#[test]
fn insurer_dates_are_read_in_france() {
    // Summer time from Sunday 29 March 2026 01:00 UTC to Sunday 25 October 2026 01:00 UTC.
    // 3 April 22:30 UTC + 2 h = 4 April 00:30.
    assert_eq!(paris_date("20260403223000Z"), Some(d(2026, 4, 4)));
    assert_eq!(paris_date("20260403215959Z"), Some(d(2026, 4, 3)));
    // Winter: 23 December 23:30 UTC + 1 h = 24 December 00:30; 22:59 stays the 23rd.
    assert_eq!(paris_date("20261223233000Z"), Some(d(2026, 12, 24)));
    assert_eq!(paris_date("20261223225900Z"), Some(d(2026, 12, 23)));
    // 28 March 22:00 UTC is still winter (+1 → 23:00 the 28th); 29 March 22:00 is summer
    // (+2 → 30 March 00:00).
    assert_eq!(paris_date("20260328220000Z"), Some(d(2026, 3, 28)));
    assert_eq!(paris_date("20260329220000Z"), Some(d(2026, 3, 30)));
    // 24 October 22:30 UTC is summer (+2 → 25 October 00:30); 25 October 22:59 is winter
    // (+1 → 23:59 the 25th).
    assert_eq!(paris_date("20261024223000Z"), Some(d(2026, 10, 25)));
    assert_eq!(paris_date("20261025225900Z"), Some(d(2026, 10, 25)));
    // New Year's Eve 23:00 UTC is 1 January 00:00 in Paris.
    assert_eq!(paris_date("20261231230000Z"), Some(d(2027, 1, 1)));
    for bad in [
        "",
        "20261231230000",
        "2026123123000Z",
        "2026123123000xZ",
        "20261331230000Z",
    ] {
        assert_eq!(paris_date(bad), None, "{bad:?}");
    }
}

#[test]
fn rule_names() {
    assert_eq!(LateRule::OnTime.as_str(), "on_time");
    assert_eq!(LateRule::Flat.as_str(), "flat_1_eur");
    assert_eq!(LateRule::Percent.as_str(), "ten_percent");
    assert_eq!(LateRule::Refused.as_str(), "refused");
}
