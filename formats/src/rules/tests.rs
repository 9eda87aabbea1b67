use super::*;
use proptest::prelude::*;

fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, dd).unwrap()
}

fn ctx(birth: NaiveDate) -> Context {
    Context {
        birth_date: birth,
        cover: CoverKind::Maladie,
        ald: false,
        css: false,
        care_path: CarePath::Treating,
        amc: false,
    }
}

fn act(code: &str, coefficient: u32, date: NaiveDate) -> ActLine {
    ActLine {
        code: code.into(),
        coefficient,
        quantity: 1,
        date,
        excess_cents: 0,
        modifiers: vec![],
    }
}

#[test]
fn modifiers_add_to_the_base_once_and_are_checked_per_profession() {
    let t = Tables::builtin();
    let day = d(2026, 11, 16);
    let mut line = act("G", 100, day);
    line.modifiers = vec!["MEG".into()];
    let child = ctx(d(2023, 1, 1));
    let p = price(&[line.clone()], &child, "10", t, &|_| PfHistory::default()).unwrap();
    // G 30 € + MEG 5 € = 35 €, 70 %, a child pays no participation.
    assert_eq!(p.base_cents, 3500);
    assert_eq!(p.amo_cents, 2450);
    assert_eq!(p.pf_cents, 0);
    line.modifiers = vec!["MEG".into(), "MCI".into()];
    let e = price(&[line.clone()], &child, "10", t, &|_| PfHistory::default()).unwrap_err();
    assert_eq!(e.code(), "UNKNOWN_MODIFIER");
    assert_eq!(e.field(), "acts[0].modifiers[1]");
    line.modifiers = vec!["XYZ".into()];
    let e = price(&[line], &child, "10", t, &|_| PfHistory::default()).unwrap_err();
    assert_eq!(e.field(), "acts[0].modifiers[0]");
}

#[test]
fn out_of_path_lowers_the_rate_from_sixteen_only() {
    let t = Tables::builtin();
    let day = d(2026, 11, 16);
    let mut teen = ctx(d(2010, 11, 16));
    teen.care_path = CarePath::OutOfPath;
    let p = price(&[act("G", 100, day)], &teen, "10", t, &|_| {
        PfHistory::default()
    })
    .unwrap();
    assert_eq!(p.acts[0].rate, 30);
    let mut child = ctx(d(2010, 11, 17));
    child.care_path = CarePath::OutOfPath;
    let p = price(&[act("G", 100, day)], &child, "10", t, &|_| {
        PfHistory::default()
    })
    .unwrap();
    assert_eq!(p.acts[0].rate, 70);
}

#[test]
fn the_builtin_table_loads_and_cites_its_sources() {
    let t = Tables::builtin();
    assert!(!t.version.is_empty());
    for a in &t.acts {
        assert!(a.prices.iter().all(|p| !p.source.is_empty()), "{}", a.code);
    }
    assert!(Tables::parse("version = 1").is_err());
    let twice = BUILTIN_TABLES.replace("code = \"GS\"", "code = \"G\"");
    assert!(Tables::parse(&twice)
        .unwrap_err()
        .0
        .contains("listed twice"));
}

fn one(
    code: &str,
    date: NaiveDate,
    birth: NaiveDate,
    profession: &str,
) -> Result<Priced, RuleError> {
    price(
        &[act(code, 100, date)],
        &ctx(birth),
        profession,
        Tables::builtin(),
        &|_| PfHistory::default(),
    )
}

#[test]
fn gp_consultation_worked_example() {
    // G 30 € → 70 % = 21 € − 2 € PF = 19 € AMO; the patient pays 11 €.
    let a = one("G", d(2026, 11, 22), d(1985, 5, 12), "10").unwrap();
    assert_eq!(
        (a.base_cents, a.amo_cents, a.pf_cents, a.patient_cents),
        (3000, 1900, 200, 1100)
    );
    // In tiers payant AMO the patient pays only the ticket modérateur and the PF today.
    let tp = |amo, amc| TiersPayant {
        amo,
        amc,
        amc_number: None,
    };
    assert_eq!(a.amounts(&tp(true, false)).due_cents, 1100);
    assert_eq!(a.amounts(&tp(false, false)).due_cents, 3000);
}

#[test]
fn minors_are_exempt_and_old_tariff_applies_before_its_date() {
    let a = one("G", d(2026, 11, 22), d(2015, 1, 1), "10").unwrap();
    assert_eq!((a.amo_cents, a.pf_cents), (2100, 0));
    let a = one("G", d(2024, 12, 21), d(1985, 1, 1), "10").unwrap();
    assert_eq!(a.base_cents, 2650);
    let e = one("ZZZ", d(2026, 1, 1), d(1985, 1, 1), "10").unwrap_err();
    assert_eq!(
        (e.code(), e.field().as_str()),
        ("UNKNOWN_ACT", "acts[0].code")
    );
    let e = one("AMI", d(2026, 1, 1), d(1985, 1, 1), "10").unwrap_err();
    assert_eq!(e.code(), "ACT_NOT_ALLOWED_FOR_PROFESSION");
}

#[test]
fn covers_path_and_amc() {
    let t = Tables::builtin();
    let born = d(1980, 1, 1);
    let g = [act("G", 100, d(2026, 3, 2))];
    // Out of the care path: 30 %, PF still withheld.
    let out = price(
        &g,
        &Context {
            care_path: CarePath::OutOfPath,
            ..ctx(born)
        },
        "10",
        t,
        &|_| PfHistory::default(),
    )
    .unwrap();
    assert_eq!(
        (out.amo_cents, out.pf_cents, out.patient_cents),
        (700, 200, 2300)
    );
    // ALD care: 100 %, PF withheld (ALD is not exempt).
    let ald = price(
        &g,
        &Context {
            ald: true,
            ..ctx(born)
        },
        "10",
        t,
        &|_| PfHistory::default(),
    )
    .unwrap();
    assert_eq!(
        (ald.amo_cents, ald.pf_cents, ald.patient_cents),
        (2800, 200, 200)
    );
    // Maternity and AT/MP: 100 %, no PF.
    for cover in [CoverKind::Maternite, CoverKind::AtMp] {
        let m = price(&g, &Context { cover, ..ctx(born) }, "10", t, &|_| {
            PfHistory::default()
        })
        .unwrap();
        assert_eq!((m.amo_cents, m.pf_cents, m.patient_cents), (3000, 0, 0));
    }
    // CSS: no PF, the CSS pays the ticket modérateur: nothing left.
    let css = price(
        &g,
        &Context {
            css: true,
            ..ctx(born)
        },
        "10",
        t,
        &|_| PfHistory::default(),
    )
    .unwrap();
    assert_eq!(
        (css.amo_cents, css.amc_cents, css.patient_cents),
        (2100, 900, 0)
    );
    // An AMC pays the ticket modérateur but not the PF nor the excess fee.
    let mut cs = [act("CS", 100, d(2026, 3, 2))];
    cs[0].excess_cents = 2000;
    let amc = price(
        &cs,
        &Context {
            amc: true,
            ..ctx(born)
        },
        "10",
        t,
        &|_| PfHistory::default(),
    )
    .unwrap();
    assert_eq!(
        (
            amc.total_cents,
            amc.amo_cents,
            amc.amc_cents,
            amc.patient_cents
        ),
        (5150, 2005, 945, 2200)
    );
}

#[test]
fn participation_caps_per_professional_and_day_and_per_year() {
    let t = Tables::builtin();
    let born = d(1980, 1, 1);
    let day = d(2026, 3, 2);
    let g = || act("G", 100, day);
    let with = |day_acts: u32, year_cents: u64| PfHistory {
        same_day_with_professional: day_acts,
        same_year_cents: year_cents,
    };
    // Five acts on one sheet: the first four withhold 2 € each, the fifth nothing
    // (4 participations a day with one professional: 4 × 2 € = 8 €).
    let five = [g(), act("DEQP003", 100, day), g(), g(), g()];
    let p = price(&five, &ctx(born), "10", t, &|_| PfHistory::default()).unwrap();
    assert_eq!(
        p.acts.iter().map(|a| a.pf_cents).collect::<Vec<_>>(),
        vec![200, 200, 200, 200, 0]
    );
    assert_eq!(p.pf_cents, 800);
    // Three already with this professional today: one more, then none.
    let p = price(&five[..2], &ctx(born), "10", t, &|_| with(3, 600)).unwrap();
    assert_eq!(
        p.acts.iter().map(|a| a.pf_cents).collect::<Vec<_>>(),
        vec![200, 0]
    );
    // Four with this professional: the day's cap is reached.
    let p = price(&five[..1], &ctx(born), "10", t, &|_| with(4, 800)).unwrap();
    assert_eq!(p.pf_cents, 0, "day cap with this professional reached");
    // Another professional's four of the day count only in the year: the caller gives
    // this professional's count (0) and the year's cents (800): 2 € withheld.
    let p = price(&five[..1], &ctx(born), "10", t, &|_| with(0, 800)).unwrap();
    assert_eq!(p.pf_cents, 200);
    // The year's cap across all professionals: 49 € used leaves 1 €, 50 € none.
    let p = price(&five[..1], &ctx(born), "10", t, &|_| with(0, 4900)).unwrap();
    assert_eq!(p.pf_cents, 100, "year cap leaves 1 €");
    let p = price(&five[..2], &ctx(born), "10", t, &|_| with(0, 4900)).unwrap();
    assert_eq!(
        p.acts.iter().map(|a| a.pf_cents).collect::<Vec<_>>(),
        vec![100, 0],
        "1 € then nothing: the year is full"
    );
    // A participation cut short by the year's cap is still one of the day's four: with
    // three today and 1 € left in the year, the fourth withholds 1 €, and after it the
    // day is full whatever the year (4 = 3 + 1).
    let p = price(&five[..1], &ctx(born), "10", t, &|_| with(3, 4900)).unwrap();
    assert_eq!(p.pf_cents, 100);
    // Two dates on one sheet: each date has its own four.
    let mut two_days = vec![g(), g(), g(), g(), g()];
    two_days.push(act("G", 100, d(2026, 3, 3)));
    let p = price(&two_days, &ctx(born), "10", t, &|_| PfHistory::default()).unwrap();
    assert_eq!(
        p.acts.iter().map(|a| a.pf_cents).collect::<Vec<_>>(),
        vec![200, 200, 200, 200, 0, 200]
    );
    // Before 15 May 2024 the 2 € did not apply (it was 1 €: out of this table's range).
    let p = price(
        &[act("G", 100, d(2024, 5, 14))],
        &ctx(born),
        "10",
        t,
        &|_| PfHistory::default(),
    )
    .unwrap();
    assert_eq!(p.pf_cents, 0);
}

#[test]
fn the_tariff_history_prices_old_dates_and_names_a_date_before_it() {
    let adult = d(1980, 1, 1);
    let base = |code: &str, date| one(code, date, adult, "10").map(|p| p.base_cents);
    // G: 25 € from 1 May 2017, 26.50 € from 1 Nov 2023, 30 € from 22 Dec 2024.
    assert_eq!(base("G", d(2017, 5, 1)), Ok(2500));
    assert_eq!(base("G", d(2023, 10, 31)), Ok(2500));
    assert_eq!(base("G", d(2023, 11, 1)), Ok(2650));
    assert_eq!(base("G", d(2024, 12, 21)), Ok(2650));
    assert_eq!(base("G", d(2024, 12, 22)), Ok(3000));
    // The day before the table: a refusal that says so, on the date.
    let e = one("G", d(2017, 4, 30), adult, "10").unwrap_err();
    assert_eq!(e.code(), "TARIFF_DATE_UNKNOWN");
    assert_eq!(e.field(), "acts[0].date");
    assert_eq!(
        e.to_string(),
        "no price for G on 2017-04-30: the table starts on 2017-05-01"
    );
    // An act created later (Mon soutien psy, 5 April 2022): before it, the same refusal.
    let e = one("APS", d(2022, 4, 4), adult, "93").unwrap_err();
    assert_eq!(e.code(), "TARIFF_DATE_UNKNOWN");
    // A code the table does not know stays an unknown act, whatever the date.
    let e = one("ZZZ", d(2017, 4, 30), adult, "10").unwrap_err();
    assert_eq!(e.code(), "UNKNOWN_ACT");
    // Every act of the table is priced on every day of this year and the last (the
    // history a sheet can reach), except those created since.
    let t = Tables::builtin();
    for a in &t.acts {
        let first = a.first_date().unwrap();
        assert!(first <= d(2023, 1, 1), "{}: starts on {first}", a.code);
    }
}

#[test]
fn nurse_coefficients_round_to_the_cent_and_heavy_acts_cost_the_flat_amount() {
    let t = Tables::builtin();
    let born = d(1950, 1, 1);
    // AMI 1.5 = 4.725 € → 4.73 €; 60 %.
    let p = price(
        &[act("AMI", 150, d(2026, 3, 2))],
        &ctx(born),
        "60",
        t,
        &|_| PfHistory::default(),
    )
    .unwrap();
    assert_eq!((p.base_cents, p.amo_cents), (473, 284));
    // AMI 60 (coefficient ≥ 60): the insured pays 24 € instead of 40 %.
    let p = price(
        &[act("AMI", 6000, d(2026, 3, 2))],
        &ctx(born),
        "60",
        t,
        &|_| PfHistory::default(),
    )
    .unwrap();
    assert_eq!(
        (p.base_cents, p.amo_cents, p.patient_cents),
        (18900, 16500, 2400)
    );
    assert!(p.acts[0].heavy_flat);
}

proptest! {
    #[test]
    fn shares_always_add_up(
        code in prop::sample::select(vec!["G", "CS", "APC", "DEQP003", "AMI", "AMK", "IFD", "APS", "HN"]),
        coefficient in 1u32..10_000, quantity in 1u32..10, excess in 0u64..100_000,
        days in 0i64..3000, age in 0i64..100,
        cover in prop::sample::select(vec![CoverKind::Maladie, CoverKind::Maternite, CoverKind::AtMp]),
        ald: bool, css: bool, amc: bool, out_of_path: bool,
        day_used in 0u32..6, year_used in 0u64..6000,
    ) {
        let t = Tables::builtin();
        let date = d(2019, 1, 1) + chrono::Days::new(days as u64);
        let born = date - chrono::Days::new((age * 365) as u64);
        let profession = t.acts.iter().find(|a| a.code == code).unwrap().professions[0].clone();
        let line = ActLine { code: code.into(), coefficient, quantity, date, excess_cents: excess, modifiers: vec![] };
        let c = Context { birth_date: born, cover, ald, css, care_path: if out_of_path { CarePath::OutOfPath } else { CarePath::Treating }, amc };
        if let Ok(p) = price(&[line.clone(), line], &c, &profession, t, &|_| PfHistory { same_day_with_professional: day_used, same_year_cents: year_used }) {
            prop_assert_eq!(p.total_cents, p.amo_cents + p.amc_cents + p.patient_cents);
            prop_assert!(p.amo_cents + p.pf_cents + p.amc_cents <= p.base_cents);
            prop_assert!(p.pf_cents <= p.patient_cents);
            // At most 4 participations of at most 2 € a day with one professional.
            let day_left = 4u64.saturating_sub(u64::from(day_used));
            prop_assert!(p.pf_cents <= 200 * day_left);
            prop_assert!(p.acts.iter().filter(|a| a.pf_cents > 0).count() as u64 <= day_left);
            prop_assert!(p.pf_cents <= 5000u64.saturating_sub(year_used));
            prop_assert_eq!(p.total_cents, p.base_cents + p.excess_cents);
        }
    }
}
