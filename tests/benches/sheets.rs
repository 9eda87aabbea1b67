//! Care sheets built, validated, priced and encoded per second on one core
//! (`fse_formats::build` then DER), for BENCHMARKS.md, beside what bounds
//! them in the same run: raw SHA-256 over the sheet body (the proof-of-
//! presence challenge every sheet needs) and raw Ed25519 signatures (the
//! Vitale card's share, done on the card). The cards are read once, in
//! process, from the simulator's profiles: card time is not in these figures.
//! Run with `cargo bench -p fsed_tests --bench sheets`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use fse_formats::api::FseCreateParams;
use fse_formats::build::{self, CardsRead};
use fse_formats::cards::{self, CpsData, VitaleData};
use fse_formats::fse::{CareSheet, Presence};
use fse_formats::rules::{PfHistory, Tables};
use fse_simulator::card::InProcess;
use fse_simulator::profiles::Profile;
use sha2::{Digest, Sha256};

fn rate(label: &str, n: u64, d: Duration, unit: &str) -> f64 {
    let r = n as f64 / d.as_secs_f64();
    println!(
        "{label:<64} {r:>12.0} {unit}/s   ({n} in {:.2} s)",
        d.as_secs_f64()
    );
    r
}

fn cps(name: &str) -> CpsData {
    let Profile::Cps(p) = Profile::load(name).unwrap() else {
        panic!()
    };
    cards::read_cps(&mut InProcess(&mut p.card().unwrap())).unwrap()
}

fn vitale(name: &str) -> VitaleData {
    let Profile::Vitale(p) = Profile::load(name).unwrap() else {
        panic!()
    };
    cards::read_vitale(&mut InProcess(&mut p.card().unwrap())).unwrap()
}

/// Builds, validates, prices and encodes `n` sheets; returns the elapsed time and the DER size.
fn run(
    params: &FseCreateParams,
    read: &CardsRead<'_>,
    today: chrono::NaiveDate,
    n: u64,
) -> (Duration, usize) {
    let tables = Tables::builtin();
    let history = |_| PfHistory::default();
    let proof = Presence {
        vitale_serial: "VIT-0001".into(),
        public_key: hex::encode([7u8; 32]),
        signature: hex::encode([9u8; 64]),
    };
    let mut size = 0;
    let t = Instant::now();
    for i in 0..n {
        let mut sheet: CareSheet = build::build(
            black_box(params),
            read,
            today,
            "20261116093000Z",
            tables,
            &history,
        )
        .unwrap();
        sheet.number = i + 1;
        sheet.presence = Some(proof.clone());
        size = black_box(sheet.to_der().unwrap()).len();
    }
    (t.elapsed(), size)
}

fn main() {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 16).unwrap();
    let n = 200_000;
    let gp = cps("cps-medecin-generaliste");
    let family = vitale("vitale-famille");
    let nurse = cps("cps-infirmier");
    let amc = vitale("vitale-amc-tiers-payant");

    let one = gp_consultation(&gp, &family, today, n);
    let three = nurse_three_acts(&nurse, &amc, today, n);
    where_the_time_goes(&three, &nurse, &amc, today, n);
    let der = decoding(&one, &gp, &family, today, n);
    limits(&der, n);
}

/// A GP consultation in tiers payant AMO, built to DER end to end (after a warm-up); returns
/// its parameters.
fn gp_consultation(
    gp: &CpsData,
    family: &VitaleData,
    today: chrono::NaiveDate,
    n: u64,
) -> FseCreateParams {
    let one: FseCreateParams = serde_json::from_value(
        serde_json::json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}}),
    )
    .unwrap();
    let read = CardsRead {
        cps: gp,
        cps_certificate: None,
        vitale: Some(family),
        vitale_certificate: None,
    };
    run(&one, &read, today, n / 10); // warm-up
    let (d, size) = run(&one, &read, today, n);
    rate(
        &format!("GP consultation, tiers payant AMO: build + validate + price + DER ({size} B)"),
        n,
        d,
        "sheets",
    );

    one
}

/// A nurse's three acts in tiers payant AMO + AMC, built to DER end to end; returns its parameters.
fn nurse_three_acts(
    nurse: &CpsData,
    amc: &VitaleData,
    today: chrono::NaiveDate,
    n: u64,
) -> FseCreateParams {
    let three: FseCreateParams = serde_json::from_value(serde_json::json!({
        "acts": [
            {"code": "AMI", "prescriber": {"national_id": "810000000009", "date": "20261102"}},
            {"code": "AMI", "coefficient": 200, "modifiers": ["MCI"], "prescriber": {"national_id": "810000000009", "date": "20261102"}},
            {"code": "IFD", "prescriber": {"national_id": "810000000009", "date": "20261102"}}
        ],
        "tiers_payant": {"amo": true, "amc": true}
    })).unwrap();
    let read = CardsRead {
        cps: nurse,
        cps_certificate: None,
        vitale: Some(amc),
        vitale_certificate: None,
    };
    let (d, size) = run(&three, &read, today, n);
    rate(
        &format!("Nurse, 3 acts, tiers payant AMO + AMC: same ({size} B)"),
        n,
        d,
        "sheets",
    );

    three
}

/// Where the time goes: building alone, encoding alone.
fn where_the_time_goes(
    three: &FseCreateParams,
    nurse: &CpsData,
    amc: &VitaleData,
    today: chrono::NaiveDate,
    n: u64,
) {
    // Where the time goes: building alone, encoding alone.
    let read = CardsRead {
        cps: nurse,
        cps_certificate: None,
        vitale: Some(amc),
        vitale_certificate: None,
    };
    let t = Instant::now();
    for _ in 0..n {
        black_box(
            build::build(
                black_box(three),
                &read,
                today,
                "20261116093000Z",
                Tables::builtin(),
                &|_| PfHistory::default(),
            )
            .unwrap(),
        );
    }
    rate(
        "  of which build + validate + price alone",
        n,
        t.elapsed(),
        "sheets",
    );
    let built = build::build(
        three,
        &read,
        today,
        "20261116093000Z",
        Tables::builtin(),
        &|_| PfHistory::default(),
    )
    .unwrap();
    let t = Instant::now();
    for _ in 0..n {
        black_box(black_box(&built).to_der().unwrap());
    }
    rate("  of which DER alone", n, t.elapsed(), "sheets");
}

/// Decoding, canonical check included; returns the decoded sheet's DER.
fn decoding(
    one: &FseCreateParams,
    gp: &CpsData,
    family: &VitaleData,
    today: chrono::NaiveDate,
    n: u64,
) -> Vec<u8> {
    // Decoding, canonical check included.
    let der = build::build(
        one,
        &CardsRead {
            cps: gp,
            cps_certificate: None,
            vitale: Some(family),
            vitale_certificate: None,
        },
        today,
        "20261116093000Z",
        Tables::builtin(),
        &|_| PfHistory::default(),
    )
    .unwrap()
    .to_der()
    .unwrap();
    let t = Instant::now();
    for _ in 0..n {
        black_box(CareSheet::from_der(black_box(&der)).unwrap());
    }
    rate(
        "decode a sheet (structure + typed + canonical re-encoding check)",
        n,
        t.elapsed(),
        "sheets",
    );

    der
}

/// The limits in the same run: raw SHA-256 over the sheet body, raw Ed25519 signatures.
fn limits(der: &[u8], n: u64) {
    // The limits in the same run.
    let body = CareSheet::from_der(der).unwrap().body_to_der().unwrap();
    let t = Instant::now();
    for _ in 0..n {
        black_box(Sha256::digest(black_box(&body)));
    }
    rate(
        &format!("limit: raw SHA-256 over the sheet body ({} B)", body.len()),
        n,
        t.elapsed(),
        "hashes",
    );
    let key = SigningKey::from_bytes(&[3u8; 32]);
    let m = 20_000;
    let t = Instant::now();
    for _ in 0..m {
        black_box(key.sign(black_box(&body[..32])));
    }
    rate(
        "limit: raw Ed25519 signatures (the Vitale card's proof, on a PC core)",
        m,
        t.elapsed(),
        "signatures",
    );
}
