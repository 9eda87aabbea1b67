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

/// The batch path answers what the insurer simulator's single checks answer: the same ARL
/// for a good lot, and for a lot whose sheet is priced wrong (re-signed by its CPS, so every
/// signature holds and the refusal is the sheet's share).
#[test]
fn the_batch_path_answers_as_the_single_checks_do() {
    use ed25519_dalek::Signer;
    use fse_formats::ack::{ReturnContent, SignedReturn};
    let trust = run::test_trust().unwrap();
    let certs = check::CertCache::default();
    let now = chrono::Utc::now();
    let now_text = now.format("%Y%m%d%H%M%SZ").to_string();
    let mut j = check::Judge {
        trust: &trust,
        certs: &certs,
        now: now.timestamp(),
        now_text: now_text.clone(),
        insurers: Default::default(),
    };
    let good = crate::insurer::sample_lot_by("cps-medecin-generaliste", "L-good", 4).unwrap();
    let mut wrong = good.clone();
    wrong.header.lot_id = "L-wrong".into();
    let mut sheet = fse_formats::fse::CareSheet::from_der(&wrong.entries[2].sheet).unwrap();
    // The AMO share of the G consultation is 1,900 cents; 1 cent more does not re-price.
    sheet.amounts.amo_cents += 1;
    // The patient's card proves the sheet as it now is (its challenge covers the amounts).
    let vitale = crate::profiles::default_vitale_data();
    let challenge = sheet.presence_challenge().unwrap();
    sheet.presence.as_mut().unwrap().signature = hex::encode(
        crate::profiles::test_key(&vitale.serial)
            .sign(&challenge)
            .to_bytes(),
    );
    wrong.entries[2].sheet = sheet.to_der().unwrap();
    wrong.header.merkle_root = fse_formats::merkle::root(&fse_formats::lot::leaves(&wrong.entries));
    let key = crate::profiles::test_key(&wrong.header.cps_serial);
    wrong.signature = key.sign(&wrong.header.to_der().unwrap()).to_bytes();
    for (lot, fast, refused) in [(&good, true, 0), (&wrong, true, 1)] {
        let der = lot.to_der().unwrap();
        let judged = j.lot(&der, "unused").unwrap();
        assert_eq!(judged.fast, fast, "{}", lot.header.lot_id);
        let ReturnContent::Arl(arl) = SignedReturn::from_der(&judged.arl).unwrap().content else {
            panic!("not an ARL");
        };
        let single = crate::insurer::judge::judge(
            fse_formats::lot::SignedLot::from_der(&der),
            &lot.header.destination,
            &now_text,
            Some(&trust),
        );
        assert_eq!(arl, single);
        assert_eq!(arl.rejections.len(), refused);
    }
}
