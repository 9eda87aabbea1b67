//! The peak-day replay (`fse-sim replay`) as a user runs it: a small day generated to a file,
//! then run through the insurer side and the consumer; the counts are exact. Rates and
//! memory are benchmarks (BENCHMARKS.md), not asserted here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use crate::common;

fn fse_sim(args: &[&str]) -> serde_json::Value {
    let out = Command::new(common::bin("fse-sim"))
        .arg("replay")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fse-sim replay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn generate(dir: &Path, sheets: &str, practitioners: &str, tamper: &str) -> serde_json::Value {
    let out = dir.join("day.replay");
    fse_sim(&[
        "generate",
        "--sheets",
        sheets,
        "--practitioners",
        practitioners,
        "--tamper",
        tamper,
        "--out",
        out.to_str().unwrap(),
    ])
}

fn run(dir: &Path) -> serde_json::Value {
    let day = dir.join("day.replay");
    let report = dir.join("report.json");
    let printed = fse_sim(&[
        "run",
        "--in",
        day.to_str().unwrap(),
        "--rates-secs",
        "0.2",
        "--report",
        report.to_str().unwrap(),
    ]);
    // The report written is the one printed.
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(written, printed);
    printed
}

#[test]
fn a_day_of_20000_sheets_is_verified_acknowledged_and_paid_sheet_for_sheet() {
    let dir = tempfile::tempdir().unwrap();
    // 20,000 sheets over 1,429 practitioners (⌈20,000 / 14⌉): 13 or 14 sheets each.
    let g = generate(dir.path(), "20000", "1429", "0");
    assert_eq!(g["summary"]["sheets"], 20_000);
    let lots = g["summary"]["lots"].as_u64().unwrap();
    // At least one lot per practitioner, at most one per destination of each (three régimes).
    assert!((1_429..=3 * 1_429).contains(&lots), "{lots} lots");
    let r = run(dir.path());
    assert_eq!(r["sheets"], 20_000);
    assert_eq!(r["sheets_verified"], 20_000);
    assert_eq!(r["lots"], lots);
    assert_eq!(r["lots_fast"], lots);
    let c = &r["consumed"];
    assert_eq!(c["arls"], lots);
    assert_eq!(c["arls_positive"], lots);
    assert_eq!(c["payment_returns"], lots);
    assert_eq!(c["payments"], 20_000);
    // Each sheet is a G consultation (30.00 €, 70 %, less the 2.00 € participation
    // forfaitaire): the AMO pays 19.00 €; 20,000 × 1,900 = 38,000,000 cents.
    assert_eq!(c["paid_cents"], 38_000_000);
    assert_eq!(c["untrusted"], 0);
    // The raw rates of the same run are there (their values are benchmarks).
    assert!(r["rates"]["single_verify_per_sec"].as_f64().unwrap() > 0.0);
    assert!(r["peak_rss_kib"].as_u64().unwrap() > 0);
}

#[test]
fn tampered_lots_are_rejected_with_their_reason_and_the_rest_is_paid() {
    let dir = tempfile::tempdir().unwrap();
    // 700 sheets over 50 practitioners (14 each), 3 damaged lots: the first lots of
    // practitioners 0, 16 and 32 (stride ⌊50 / 3⌋ = 16): a flipped byte of the CPS signature,
    // a sheet changed after signing, a proof of presence made by another key.
    let g = generate(dir.path(), "700", "50", "3");
    assert_eq!(g["summary"]["tampered_lots"], 3);
    let lots = g["summary"]["lots"].as_u64().unwrap();
    let damaged_sheets = g["summary"]["tampered_sheets"].as_u64().unwrap();
    let r = run(dir.path());
    assert_eq!(r["lots"], lots);
    assert_eq!(r["lots_single"], 3);
    assert_eq!(r["sheets_verified"], 700 - damaged_sheets);
    let c = &r["consumed"];
    assert_eq!(c["arls"], lots);
    assert_eq!(c["arls_negative"], 3);
    assert_eq!(c["rejections"]["LOT_SIGNATURE"], 1);
    assert_eq!(c["rejections"]["LOT_MERKLE_ROOT"], 1);
    assert_eq!(c["rejections"]["SHEET_INVALID"], 1);
    // The lots refused whole pay nothing; the forged proof's lot refuses that one sheet and
    // pays its others. So the payments are 700 minus the damaged lots' sheets, plus those of
    // the third damaged lot less one: between 700 − damaged and 700 − 1 − 2 (each damaged
    // lot holds at least one sheet).
    let payments = c["payments"].as_u64().unwrap();
    assert!(
        payments > 700 - damaged_sheets && payments <= 697,
        "{payments}"
    );
    assert_eq!(c["payment_returns"], lots - 2);
}
