//! Lots over the real parts (pcscd + vpcd, the simulated CPS, SQLite, the
//! Unix socket): the CPS signs once per lot — counted by the simulated card;
//! each lot's signature is also a CMS SignedData that GnuTLS `certtool
//! --p7-verify` accepts against the test PKI and refuses once tampered; and
//! one sheet verifies alone with its proof, while a tampered one does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{order, wait_for};
use fse_formats::lot::{LotError, SheetProof};
use fse_formats::pki::TrustStore;
use serde_json::{json, Value};

fn certtool_verify(dir: &Path, name: &str, cms_der: &[u8], trust: &Path) -> (bool, String) {
    let file = dir.join(name);
    std::fs::write(&file, cms_der).unwrap();
    let out = Command::new("certtool")
        .args(["--p7-verify", "--inder", "--infile"])
        .arg(&file)
        .arg("--load-ca-certificate")
        .arg(trust)
        .output()
        .expect("certtool (Debian's gnutls-bin; tests/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn pem_body(pem: &str) -> Vec<u8> {
    pem::parse(pem).unwrap().into_contents()
}

#[test]
fn one_signature_per_lot_cms_checked_by_certtool_and_sheets_proved_alone() {
    let _turn = common::shared_services();
    let dir = tempfile::tempdir().unwrap();
    let (_sim, control) = common::start_fast_cards(dir.path(), &[]);
    let (mut fsed, mut rpc) = common::start_fsed(
        dir.path(),
        &[
            "--transport",
            "spool",
            "--lot-max-sheets",
            "10",
            "--lot-max-age-secs",
            "3600",
        ],
    );
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let sheets = 50;
    let mut ids = Vec::new();
    for i in 0..sheets {
        let s = rpc.ok(
            "fse.create",
            json!({"act": {"code": "G"}, "beneficiary": i % 2, "tiers_payant": {"amo": true}}),
        );
        ids.push(s["id"].as_i64().unwrap());
    }
    let lots: Vec<Value> = wait_for("5 signed lots", Duration::from_secs(60), || {
        let lots = rpc.ok("lots.list", json!({}));
        let lots = lots.as_array().unwrap().clone();
        (lots.len() == 5 && lots.iter().all(|l| l["state"] != "closed")).then_some(lots)
    });
    assert!(lots.iter().all(|l| l["sheet_count"] == 10), "{lots:?}");

    // The card counted its signatures: one per lot, 1/10 per sheet.
    let stats = order(&control, &["stats", "--slot", "cps"]);
    assert_eq!(stats["signatures"], json!(5), "{stats}");

    let trust_dir = dir.path().join("trust");
    let (cms, signed) = certtool_checks_the_cms(dir.path(), &trust_dir, &mut rpc, &lots);
    sheets_proved_alone(&trust_dir, &mut rpc, &cms, &signed, &ids);
    deadline_closes_a_lot_at_once(dir.path(), &mut rpc);

    let r = rpc.call("fse.proof", json!({"id": 999_999}));
    assert_eq!(r["error"]["data"]["name"], "NOT_FOUND", "{r}");
    assert!(fsed.terminate().success());
}

/// CMS SignedData: certtool accepts the first lot's CMS against the test PKI, and refuses it
/// tampered. Returns the CMS and the signed lot.
fn certtool_checks_the_cms(
    dir: &Path,
    trust_dir: &Path,
    rpc: &mut common::Rpc,
    lots: &[Value],
) -> (Vec<u8>, fse_formats::lot::SignedLot) {
    // CMS SignedData: certtool accepts it against the test PKI, and refuses it tampered.
    let bundle = dir.join("ca-bundle.pem");
    std::fs::write(
        &bundle,
        [
            std::fs::read_to_string(trust_dir.join("root.pem")).unwrap(),
            std::fs::read_to_string(trust_dir.join("ca.pem")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let lot = rpc.ok("lots.get", json!({"lot_id": lots[0]["id"]}));
    let cms = pem_body(lot["cms"].as_str().unwrap());
    let (ok, text) = certtool_verify(dir, "lot.p7", &cms, &bundle);
    assert!(ok, "certtool refused the lot's CMS:\n{text}");
    assert!(text.contains("Signature status: ok"), "{text}");
    let header = hex::decode(lot["signed_lot"].as_str().unwrap()).unwrap();
    let signed = fse_formats::lot::SignedLot::from_der(&header).unwrap();
    let header_der = signed.header.to_der().unwrap();
    let at = cms
        .windows(header_der.len())
        .position(|w| w == header_der)
        .expect("the CMS encapsulates the lot header");
    let mut tampered = cms.clone();
    tampered[at + header_der.len() - 1] ^= 0x01;
    let (ok, text) = certtool_verify(dir, "tampered.p7", &tampered, &bundle);
    assert!(!ok, "certtool accepted a tampered lot:\n{text}");

    (cms, signed)
}

/// One sheet alone, with its proof, against the trust store and its CRLs; the whole lot with
/// the certificate its CMS carries.
fn sheets_proved_alone(
    trust_dir: &Path,
    rpc: &mut common::Rpc,
    cms: &[u8],
    signed: &fse_formats::lot::SignedLot,
    ids: &[i64],
) {
    // One sheet alone, with its proof, against the trust store and its CRLs.
    let mut store = TrustStore::new();
    for f in ["root.pem", "ca.pem"] {
        store
            .add_certificates(&std::fs::read(trust_dir.join(f)).unwrap())
            .unwrap();
    }
    store
        .add_crls(&std::fs::read(trust_dir.join("crl.pem")).unwrap())
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    // The whole lot, with the certificate its CMS carries.
    let cert = fse_formats::cms::certificates(cms).unwrap().remove(0);
    assert_eq!(signed.verify_trusted(&store, &cert, now).unwrap().len(), 10);
    assert!(matches!(
        signed.verify_trusted(&TrustStore::new(), &cert, now),
        Err(LotError::Certificate(_))
    ));
    for id in [ids[0], ids[17], ids[49]] {
        let proof: SheetProof =
            serde_json::from_value(rpc.ok("fse.proof", json!({"id": id}))).unwrap();
        let sheet = proof.verify(Some(&store), now).unwrap();
        let got = rpc.ok("fse.get", json!({"id": id}));
        assert_eq!(json!(sheet.number), got["number"]);
        let mut t = proof.clone();
        let mut der = hex::decode(&t.sheet).unwrap();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        t.sheet = hex::encode(der);
        assert_eq!(
            t.verify(Some(&store), now).unwrap_err(),
            LotError::Inclusion
        );
        let mut t = proof.clone();
        t.signer_certificate = None;
        assert!(matches!(
            t.verify(Some(&store), now),
            Err(LotError::Certificate(_))
        ));
    }
}

/// A sheet near its sending deadline raises an alarm and its lot closes at once.
fn deadline_closes_a_lot_at_once(dir: &Path, rpc: &mut common::Rpc) {
    // A sheet near its sending deadline raises an alarm and its lot closes at once (the lots
    // otherwise close at 10 sheets or after an hour).
    use fse_formats::calendar::{add_working_days, sending_deadline, Payment, Region};
    let today = chrono::Utc::now().date_naive();
    let cutoff = add_working_days(today, 1, Region::Metropole).unwrap();
    let late = (0..10)
        .map(|back| today - chrono::Duration::days(back))
        .find(|d| {
            let due = sending_deadline(*d, Payment::PatientPaid, Region::Metropole).unwrap();
            due >= today && due <= cutoff
        })
        .expect("a date of care whose deadline is today or the next working day");
    let mut watcher = common::Rpc::connect(&dir.join("fsed.sock"), Duration::from_secs(5));
    watcher.ok("events.subscribe", json!({}));
    let urgent = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G", "date": late.format("%Y%m%d").to_string()}}),
    );
    let alarm = watcher.wait_event("sheet.deadline");
    assert_eq!(alarm["sheet_id"], urgent["id"], "{alarm}");
    let closed = watcher.wait_event("lot.closed");
    assert_eq!(closed["sheets"], 1, "{closed}");
    let alarms = rpc.ok("queue.alarms", json!({}));
    assert!(
        alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == urgent["id"]),
        "{alarms}"
    );
}
