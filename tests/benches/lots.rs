//! Lot signing at a real card's pace: the simulated CPS with its default
//! latency (20 ms per APDU, 150 ms per signature) through pcscd + vpcd.
//! Sheets per second when one signature covers a lot of 1,000 (salted
//! Merkle tree, DER header, SELECT + PSO on the card) against the baseline
//! of one card signature per sheet, measured in the same run. Needs pcscd
//! with the vpcd driver and the workspace's binaries built (`tests/run` does
//! both): `cargo bench -p fsed_tests --bench lots`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::{bin, connect, Kill};
use fse_formats::cards::{self, Pin};
use fse_formats::fse::CareSheet;
use fse_formats::lot::{self, LotEntry, LotHeader};
use fse_formats::merkle;
use fse_simulator::profiles;

fn main() {
    let _cards = Kill(
        Command::new(bin("fse-sim"))
            .arg("cards") // default latency: a real card's pace
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut card = connect("Virtual PCD 00 00");
    let data = cards::read_cps(&mut card).unwrap();
    cards::verify_pin(&mut card, &Pin::new(profiles::DEFAULT_PIN).unwrap()).unwrap();
    let sheets: Vec<Vec<u8>> = (1..=1000)
        .map(|i| CareSheet::sample(i).to_der().unwrap())
        .collect();

    // One signature per lot of 1,000.
    let lots = 3;
    let t = Instant::now();
    for r in 0..lots {
        let entries: Vec<LotEntry> = sheets
            .iter()
            .map(|s| LotEntry {
                salt: [r as u8; lot::SALT_LEN],
                sheet: s.clone(),
            })
            .collect();
        let header = LotHeader {
            lot_id: format!("810000000009-{r:08}"),
            number: r + 1,
            practitioner_id: data.holder.national_id.clone(),
            destination: "017510001".into(),
            sheet_count: entries.len() as u64,
            merkle_root: merkle::root(&lot::leaves(&entries)),
            closed_at: "20261122120000Z".into(),
            cps_serial: data.holder.serial.clone(),
            signer_key: data.public_key,
            attachments: Vec::new(),
        };
        cards::select_aid(&mut card, cards::AID_CPS).unwrap();
        cards::cps_sign(&mut card, &header.to_der().unwrap()).unwrap();
    }
    let per_lot = t.elapsed().as_secs_f64() / lots as f64;
    let lot_rate = sheets.len() as f64 / per_lot;
    println!("lots of 1,000 sheets, one CPS signature each        {lot_rate:>10.0} sheets/s   ({:.0} ms per lot)", per_lot * 1e3);

    // Baseline: the card signs every sheet.
    let n = 10;
    let t = Instant::now();
    for s in sheets.iter().take(n) {
        cards::select_aid(&mut card, cards::AID_CPS).unwrap();
        cards::cps_sign(&mut card, s).unwrap();
    }
    let per_sheet = t.elapsed().as_secs_f64() / n as f64;
    println!("baseline: one CPS signature per sheet               {:>10.1} sheets/s   ({:.0} ms per sheet)", 1.0 / per_sheet, per_sheet * 1e3);
    println!(
        "ratio                                                {:>10.0}×",
        lot_rate * per_sheet
    );
}
