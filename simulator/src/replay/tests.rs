//! The replay end to end in memory: a small day generated and run, counts exact.

use super::*;

fn day(sheets: u64, practitioners: u64, tamper: u64) -> (tempfile::TempDir, PathBuf, Generated) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("day.replay");
    let plan = plan_of(&GenerateArgs {
        sheets,
        practitioners: Some(practitioners),
        patients: Some(500),
        tamper,
        seed: 11,
        day: "20261207".into(),
        threads: Some(2),
        out: path.clone(),
    })
    .unwrap();
    let mut out = std::fs::File::create(&path).unwrap();
    let g = generate(&plan, &mut out, 2).unwrap();
    (dir, path, g)
}

#[test]
fn a_small_day_is_verified_acknowledged_and_paid_sheet_for_sheet() {
    // 300 sheets over 20 practitioners: 15 each.
    let (_dir, path, g) = day(300, 20, 0);
    assert_eq!(g.summary.sheets, 300);
    let r = run(
        &path,
        &RunOptions {
            workers: 2,
            rates_secs: 0.0,
        },
    )
    .unwrap();
    assert_eq!(r.sheets, 300);
    assert_eq!(r.sheets_verified, 300);
    assert_eq!(r.lots, g.summary.lots);
    assert_eq!(r.lots_fast, r.lots);
    assert_eq!(r.consumed.arls, r.lots);
    assert_eq!(r.consumed.arls_positive, r.lots);
    assert_eq!(r.consumed.payment_returns, r.lots);
    assert_eq!(r.consumed.payments, 300);
    // Every sheet is the sample G consultation: the AMO pays 19.00 € (30.00 € at 70 %
    // = 21.00 €, less the 2.00 € participation forfaitaire): 300 × 1,900 = 570,000 cents.
    assert_eq!(r.consumed.paid_cents, 570_000);
    assert_eq!(r.consumed.untrusted, 0);
    assert_eq!(r.generated.as_ref().map(|s| s.lots), Some(r.lots));
}

#[test]
fn damaged_lots_are_negative_arls_with_their_reason() {
    // 90 sheets over 6 practitioners (15 each); 3 damaged: practitioners 0, 2 and 4
    // (stride 6 / 3 = 2), a bad signature, a sheet changed after signing, a forged proof.
    let (_dir, path, g) = day(90, 6, 3);
    assert_eq!(g.summary.tampered_lots, 3);
    let r = run(
        &path,
        &RunOptions {
            workers: 2,
            rates_secs: 0.0,
        },
    )
    .unwrap();
    assert_eq!(r.consumed.arls, r.lots);
    assert_eq!(r.consumed.arls_negative, 3);
    assert_eq!(r.lots_single, 3);
    let codes = &r.consumed.rejections;
    assert_eq!(codes.get("LOT_SIGNATURE"), Some(&1));
    assert_eq!(codes.get("LOT_MERKLE_ROOT"), Some(&1));
    assert_eq!(codes.get("SHEET_INVALID"), Some(&1));
    assert_eq!(r.sheets, 90);
    // The damaged lots' sheets are not verified; the forged proof's lot pays its other
    // sheets (the insurer refuses the named sheet only), the two others pay none.
    assert_eq!(r.sheets_verified, 90 - g.summary.tampered_sheets);
    assert!(r.consumed.payments < 90);
}

#[test]
fn a_plan_out_of_bounds_is_refused_with_its_field() {
    let args = |sheets, practitioners| GenerateArgs {
        sheets,
        practitioners,
        patients: None,
        tamper: 0,
        seed: 1,
        day: "20261207".into(),
        threads: None,
        out: PathBuf::from("unused"),
    };
    assert!(plan_of(&args(0, None)).unwrap_err().contains("--sheets"));
    assert!(plan_of(&args(10, Some(11)))
        .unwrap_err()
        .contains("--practitioners"));
    // 20,000 sheets: ⌈20,000 / 14⌉ = 1,429 practitioners by default.
    assert_eq!(plan_of(&args(20_000, None)).unwrap().practitioners, 1_429);
}
