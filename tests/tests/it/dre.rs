//! DREs over the real RabbitMQ broker, with the cards behind pcscd: the
//! sheets in tiers payant AMC of a lot go to the AMC that pays directly as
//! one DRE lot under the lot's single CPS signature (each DRE with its
//! sheet's audit path), which the AMC simulator verifies — signature,
//! certificate, inclusion, DRE against its sheet.
//!
//! (A test binary of its own: tests in one binary run in parallel, and the
//! vpcd reader slots are shared.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{wait_for, Proc};
use serde_json::json;

use common::AMQP;

#[test]
fn dre_lots_go_to_the_amc_paid_directly_under_the_lots_signature() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (profile, destination, amc) = common::vitale_of_new_centre_with_amc(dir.path());
    let (_sim, _control) =
        common::start_fast_cards(dir.path(), &["--vitale-profile", profile.to_str().unwrap()]);
    let _amo = common::start_insurer(&["--binding", &destination]);
    let return_queue = format!("fsed.returns.dre.{}", common::unique());
    let (mut fsed, mut rpc) = common::start_fsed_amqp(dir.path(), &return_queue, 3, 1);
    let trust = dir.path().join("trust");
    let mut amc_insurer = Proc::start(
        "fse-sim",
        &[
            "insurer",
            "--kind",
            "amc",
            "--amqp",
            AMQP,
            "--binding",
            &amc,
            "--trust-dir",
            trust.to_str().unwrap(),
        ],
    );
    amc_insurer.wait_line("insurer ready", Duration::from_secs(30));
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    // Four sheets in tiers payant AMO + AMC (a DRE each), two without tiers payant.
    for i in 0..6 {
        let tp = i % 3 != 2;
        let s = rpc.ok(
            "fse.create",
            json!({"act": {"code": "G"}, "tiers_payant": {"amo": tp, "amc": tp}}),
        );
        assert_eq!(s["sheet"]["tiers_payant"]["amc"], json!(tp), "{s}");
    }
    // Lots close at 3 sheets or 1 s of age: on a busy machine a lot may close early, so wait
    // for all six sheets in acknowledged lots, however many lots that made.
    let lots = wait_for(
        "every sheet in an acknowledged lot",
        Duration::from_secs(60),
        || {
            let lots = rpc.ok("lots.list", json!({}));
            let all = lots.as_array().unwrap();
            let sheets: u64 = all.iter().map(|l| l["sheet_count"].as_u64().unwrap()).sum();
            (sheets == 6 && all.iter().all(|l| l["state"] == "acknowledged")).then_some(lots)
        },
    );
    // Each lot holding a sheet in AMC tiers payant has one DRE lot (one AMC), sent.
    let (dres, dre_lots) = wait_for("the DRE lots sent", Duration::from_secs(30), || {
        let (mut dres, mut dre_lots) = (0, 0);
        for l in lots.as_array().unwrap() {
            let got = rpc.ok("lots.get", json!({"lot_id": l["id"]}));
            for d in got["dre_lots"].as_array().unwrap() {
                if d["state"] != "sent" {
                    return None;
                }
                assert_eq!(d["amc"], json!(amc), "{got}");
                dres += d["dres"].as_u64().unwrap();
                dre_lots += 1;
            }
        }
        Some((dres, dre_lots))
    });
    assert_eq!(dres, 4);
    assert!(fsed.terminate().success());

    // The AMC verified every DRE: the CPS signature, its certificate, each sheet's proof.
    std::thread::sleep(Duration::from_secs(1));
    amc_insurer.terminate();
    let report: serde_json::Value = loop {
        let line = amc_insurer
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the AMC's report");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v.get("dres").is_some() {
                break v;
            }
        }
    };
    assert_eq!(report["dres"], 4, "{report}");
    assert_eq!(report["dre_lots"], dre_lots, "{report}");
    assert_eq!(report["rejections"], json!({}), "{report}");
    common::delete_queues(&[
        &format!("insurer.amo.{destination}"),
        &format!("insurer.amc.{amc}"),
        &return_queue,
    ]);
}
