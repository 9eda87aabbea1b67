//! Tests of the insurer: judging, knobs, returns, report and both transports.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fse_formats::ack::{ArlStatus, PaymentOutcome, ReturnContent, SignedReturn};
use fse_formats::wire;
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use tokio::sync::watch;

use super::amqp::redact;
use super::spool::write_atomic;
use super::*;

/// The ARL in `der`, after checking it is signed by `insurer` under the test PKI.
fn signed_arl(der: &[u8], insurer: &str) -> Arl {
    let pki = crate::pki::TestPki::shared().unwrap();
    let mut trust = TrustStore::new();
    trust.add_certificates(pki.root_pem().as_bytes()).unwrap();
    trust.add_certificates(pki.ca_pem().as_bytes()).unwrap();
    let signed = SignedReturn::from_der(der).unwrap();
    let now = chrono::Utc::now().timestamp();
    assert_eq!(signed.verify(&trust, now).unwrap(), insurer);
    match signed.content {
        ReturnContent::Arl(a) => a,
        other => panic!("not an ARL: {other:?}"),
    }
}

#[test]
fn an_insurer_playing_every_destination_signs_as_each() {
    let lot = sample_lot("L-dest", 1);
    let mut ins = Insurer::new(DEFAULT_INSURER)
        .answering_as_each_destination()
        .with_knobs(Knobs {
            payments: true,
            ..Knobs::default()
        });
    let arl = ins.receive(&lot.to_der().unwrap());
    assert_eq!(arl.insurer, lot.header.destination);
    let der = sign_return(ReturnContent::Arl(arl)).unwrap();
    signed_arl(&der, &lot.header.destination);
    let pay = ins.payment_return("L-dest").unwrap();
    assert_eq!(pay.insurer, lot.header.destination);
}

#[test]
fn a_valid_lot_gets_a_positive_arl_echoing_its_root() {
    let lot = sample_lot("L1", 3);
    let arl = answer_lot(&lot.to_der().unwrap(), "ins", "20261122120000Z");
    assert_eq!(arl.status, ArlStatus::Positive, "{arl:?}");
    assert_eq!(arl.lot_id, "L1");
    assert_eq!(arl.insurer, "ins");
    assert_eq!(arl.received_at, "20261122120000Z");
    assert_eq!(arl.merkle_root, hex::encode(lot.header.merkle_root));
    assert!(arl.rejections.is_empty());
    assert_eq!(Arl::from_der(&arl.to_der().unwrap()).unwrap(), arl);
}

#[test]
fn tampered_forged_and_malformed_lots_are_refused_with_their_reason() {
    let lot = sample_lot("L2", 3);
    let mut t = lot.clone();
    let last = t.entries[1].sheet.len() - 1;
    t.entries[1].sheet[last] ^= 1;
    let arl = answer_lot(&t.to_der().unwrap(), "i", "t");
    assert_eq!(
        (
            arl.status,
            arl.rejections[0].code.as_str(),
            arl.lot_id.as_str()
        ),
        (ArlStatus::Negative, "LOT_MERKLE_ROOT", "L2")
    );
    assert_eq!(arl.rejections[0].sheet_number, None);
    let mut t = lot.clone();
    t.signature[0] ^= 1;
    assert_eq!(
        answer_lot(&t.to_der().unwrap(), "i", "t").rejections[0].code,
        "LOT_SIGNATURE"
    );
    let mut t = lot.clone();
    t.header.sheet_count = 4;
    assert_eq!(
        answer_lot(&t.to_der().unwrap(), "i", "t").rejections[0].code,
        "LOT_COUNT"
    );
    let arl = answer_lot(b"\x30\x03garbage", "i", "t");
    assert_eq!(
        (arl.status, arl.rejections[0].code.as_str()),
        (ArlStatus::Negative, "LOT_MALFORMED")
    );
    assert_eq!(
        (arl.lot_id.as_str(), arl.merkle_root.as_str()),
        (UNKNOWN_LOT_ID, "0".repeat(64).as_str())
    );
    // Every negative ARL still encodes.
    assert!(arl.to_der().is_ok());
}

#[test]
fn a_sheet_that_fails_its_proof_is_refused_by_number() {
    use ed25519_dalek::Signer;
    let mut lot = sample_lot("L5", 3);
    let mut sheet = fse_formats::fse::CareSheet::from_der(&lot.entries[1].sheet).unwrap();
    sheet.amounts.total_cents += 1; // no longer what the Vitale card signed
    lot.entries[1].sheet = sheet.to_der().unwrap();
    lot.header.merkle_root = fse_formats::merkle::root(&fse_formats::lot::leaves(&lot.entries));
    let (holder, _) = crate::profiles::default_cps_holder();
    let key = crate::profiles::test_key(&holder.serial);
    lot.signature = key.sign(&lot.header.to_der().unwrap()).to_bytes();
    let arl = answer_lot(&lot.to_der().unwrap(), "i", "t");
    assert_eq!(arl.status, ArlStatus::Negative);
    assert_eq!(arl.rejections[0].code, "SHEET_INVALID", "{arl:?}");
    assert_eq!(arl.rejections[0].sheet_number, Some(sheet.number));
}

fn test_trust() -> TrustStore {
    let dir = tempfile::tempdir().unwrap();
    crate::pki::TestPki::shared()
        .unwrap()
        .write(dir.path(), time::OffsetDateTime::now_utc())
        .unwrap();
    load_trust(dir.path()).unwrap()
}

#[test]
fn with_a_trust_store_expired_and_revoked_cards_and_wrong_shares_are_refused() {
    let mut ins = Insurer::new("i").with_trust(test_trust());
    let good = sample_lot_by("cps-medecin-generaliste", "L-ok", 3).unwrap();
    let arl = ins.receive(&good.to_der().unwrap());
    assert_eq!(arl.status, ArlStatus::Positive, "{arl:?}");
    for (profile, words) in [
        ("cps-expired", "expired"),
        ("cps-revoked", "revocation list"),
    ] {
        let lot = sample_lot_by(profile, &format!("L-{profile}"), 2).unwrap();
        let arl = ins.receive(&lot.to_der().unwrap());
        assert_eq!(arl.status, ArlStatus::Negative);
        assert_eq!(arl.rejections[0].code, "LOT_CERTIFICATE", "{arl:?}");
        assert!(
            arl.rejections[0].reason.contains(words),
            "{profile}: {arl:?}"
        );
    }
    // A lot without its signer's certificate cannot be checked: refused.
    let arl = ins.receive(&sample_lot("L-bare", 1).to_der().unwrap());
    assert_eq!(arl.rejections[0].code, "LOT_CERTIFICATE", "{arl:?}");

    // A sheet whose AMO share is wrong, re-signed as a careless sender would: the lot
    // verifies, the insurer re-prices and refuses that sheet by number, naming the field.
    use ed25519_dalek::Signer;
    let mut lot = sample_lot_by("cps-medecin-generaliste", "L-shares", 3).unwrap();
    let vit_key = crate::profiles::test_key(&crate::profiles::default_vitale_data().serial);
    let mut sheet = fse_formats::fse::CareSheet::from_der(&lot.entries[1].sheet).unwrap();
    sheet.acts[0].amo_cents += 100;
    sheet.amounts.amo_cents += 100;
    sheet.amounts.patient_cents -= 100;
    sheet.amounts.due_cents -= 100;
    let signature = hex::encode(
        vit_key
            .sign(&sheet.presence_challenge().unwrap())
            .to_bytes(),
    );
    sheet.presence.as_mut().unwrap().signature = signature;
    lot.entries[1].sheet = sheet.to_der().unwrap();
    lot.header.merkle_root = fse_formats::merkle::root(&fse_formats::lot::leaves(&lot.entries));
    let cps_key = crate::profiles::test_key("CPS-0001");
    lot.signature = cps_key.sign(&lot.header.to_der().unwrap()).to_bytes();
    let arl = ins.receive(&lot.to_der().unwrap());
    assert_eq!(arl.status, ArlStatus::Negative);
    assert_eq!(arl.rejections.len(), 1, "{arl:?}");
    assert_eq!(arl.rejections[0].code, "SHEET_SHARES");
    assert_eq!(arl.rejections[0].sheet_number, Some(sheet.number));
    assert!(
        arl.rejections[0].reason.contains("acts[0].amo_cents"),
        "{arl:?}"
    );
}

#[test]
fn the_reject_knob_refuses_every_sheet_of_the_first_lots_only() {
    let mut ins = Insurer::new("i").rejecting_first_lots(1);
    let arl = ins.receive(&sample_lot("L-1", 2).to_der().unwrap());
    assert_eq!(arl.status, ArlStatus::Negative);
    let numbers: Vec<Option<u64>> = arl.rejections.iter().map(|r| r.sheet_number).collect();
    assert_eq!(numbers, vec![Some(1), Some(2)]);
    assert!(arl.rejections.iter().all(|r| r.code == "TEST_REJECTED"));
    // The same lot again: the same answer; a new lot: judged on its merits.
    assert_eq!(ins.receive(&sample_lot("L-1", 2).to_der().unwrap()), arl);
    let arl = ins.receive(&sample_lot("L-2", 2).to_der().unwrap());
    assert_eq!(arl.status, ArlStatus::Positive);
}

#[test]
fn a_lot_delivered_twice_gets_the_same_answer() {
    let mut ins = Insurer::new("i");
    let der = sample_lot("L3", 2).to_der().unwrap();
    let a = ins.receive(&der);
    let b = ins.receive(&der);
    assert_eq!(a, b);
    // Same id, other content: the stored answer, not a new judgement.
    let mut forged = sample_lot("L3", 2);
    forged.signature[0] ^= 1;
    assert_eq!(ins.receive(&forged.to_der().unwrap()), a);
    ins.receive(b"junk");
    ins.receive(b"junk");
    assert_eq!(
        ins.report(),
        InsurerReport {
            received: 5,
            duplicates: 2,
            positive: 1,
            negative: 2,
            sheets: 2,
            rejections: ins.report().rejections,
            ..Default::default()
        }
    );
}

#[test]
fn knobs_reject_lots_at_their_rate_and_pay_or_refuse_the_rest() {
    let mut ins = Insurer::new("i").with_knobs(Knobs {
        payments: true,
        refuse_payments_percent: 100,
        ..Default::default()
    });
    let lot = sample_lot("L-pay", 3);
    let arl = ins.receive(&lot.to_der().unwrap());
    assert_eq!(arl.status, ArlStatus::Positive);
    let ret = ins.payment_return("L-pay").expect("a payment return");
    assert_eq!(ret.payments.len(), 3);
    assert!(ret.payments.iter().all(
        |p| matches!(&p.outcome, PaymentOutcome::Refused { code, .. } if code == "TEST_REFUSED")
    ));
    // A duplicate delivery gets the same return again.
    ins.receive(&lot.to_der().unwrap());
    assert_eq!(ins.payment_return("L-pay"), Some(ret));

    let mut ins = Insurer::new("i").with_knobs(Knobs {
        payments: true,
        reject_percent: 100,
        ..Default::default()
    });
    let arl = ins.receive(&sample_lot("L-rej", 2).to_der().unwrap());
    assert_eq!(arl.status, ArlStatus::Negative);
    assert!(arl.rejections.iter().all(|r| r.code == "TEST_REJECTED"));
    assert_eq!(
        ins.payment_return("L-rej"),
        None,
        "nothing acknowledged, nothing paid"
    );
    assert_eq!(ins.report().rejections["TEST_REJECTED"], 2);

    let mut ins = Insurer::new("i").with_knobs(Knobs {
        payments: true,
        ..Default::default()
    });
    let lot = sample_lot("L-ok", 2);
    ins.receive(&lot.to_der().unwrap());
    let amo: Vec<u64> = lot
        .entries
        .iter()
        .map(|e| {
            fse_formats::fse::CareSheet::from_der(&e.sheet)
                .unwrap()
                .amounts
                .amo_cents
        })
        .collect();
    let paid: Vec<u64> = ins
        .payment_return("L-ok")
        .unwrap()
        .payments
        .iter()
        .map(|p| match p.outcome {
            PaymentOutcome::Paid { amount_cents } => amount_cents,
            PaymentOutcome::Refused { .. } => panic!("refused"),
        })
        .collect();
    assert_eq!(paid, amo, "each sheet is paid its AMO share");
    assert_eq!(ins.report().paid, 2);
}

#[test]
fn dre_lots_carry_their_sheets_proofs_and_an_amc_checks_them() {
    use fse_formats::dre_lot::DreLot;
    let lot = sample_lot_with_dres("L-dre", 5, "88888888").unwrap();
    // The FSE lot itself is still valid for the AMO, shares included.
    let arl = Insurer::new("i")
        .with_trust(test_trust())
        .receive(&lot.to_der().unwrap());
    assert_eq!(arl.status, ArlStatus::Positive, "{arl:?}");
    let dre_lots = DreLot::from_signed(&lot).unwrap();
    assert_eq!(dre_lots.len(), 1, "one AMC");
    // Built from the DREs made with the sheets (what fsed stores), the same DRE lots.
    let made: Vec<Option<Vec<u8>>> = lot
        .entries
        .iter()
        .map(|e| {
            let sheet = fse_formats::fse::CareSheet::from_der(&e.sheet).unwrap();
            fse_formats::dre::Dre::from_sheet(&sheet)
                .unwrap()
                .map(|d| d.to_der().unwrap())
        })
        .collect();
    assert_eq!(made.iter().flatten().count(), 2);
    let with_dres = DreLot::from_signed_with_dres(&lot, &made).unwrap();
    assert_eq!(with_dres.len(), 1);
    assert_eq!(
        with_dres[0].to_der().unwrap(),
        dre_lots[0].to_der().unwrap()
    );
    assert!(DreLot::from_signed_with_dres(&lot, &made[1..]).is_err());
    let d = &dre_lots[0];
    assert_eq!(
        (d.amc.as_str(), d.entries.len()),
        ("88888888", 2),
        "sheets 2 and 4"
    );
    let der = d.to_der().unwrap();
    assert_eq!(&DreLot::from_der(&der).unwrap(), d);
    let now = chrono::Utc::now().timestamp();
    let dres = d.verify(Some(&test_trust()), now).unwrap();
    assert_eq!(
        dres.iter().map(|x| x.sheet_number).collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert!(dres.iter().all(|x| x.amc_cents == 900));

    // A DRE that does not match its sheet, a sheet swapped, a wrong AMC: refused.
    let mut bad = d.clone();
    let mut dre = fse_formats::dre::Dre::from_der(&bad.entries[0].dre).unwrap();
    dre.amc_cents += 100;
    bad.entries[0].dre = dre.to_der().unwrap();
    assert!(matches!(bad.verify(None, now), Err(LotError::Sheet { .. })));
    let mut bad = d.clone();
    bad.entries[0].sheet = lot.entries[0].sheet.clone();
    assert!(matches!(bad.verify(None, now), Err(LotError::Inclusion)));
    let mut bad = d.clone();
    bad.amc = "77777777".into();
    assert!(bad.verify(None, now).is_err());
    let mut bad = d.clone();
    bad.signature[0] ^= 1;
    assert!(matches!(bad.verify(None, now), Err(LotError::Signature)));

    let mut amc = Insurer::new("88888888").with_trust(test_trust());
    assert_eq!(amc.receive_dre(&der), Ok(2));
    assert_eq!(
        amc.receive_dre(&der),
        Ok(2),
        "a duplicate is accepted again"
    );
    let err = amc.receive_dre(b"junk").unwrap_err();
    assert_eq!(err.0, "DRE_LOT_MALFORMED");
    let r = amc.report();
    assert_eq!((r.dre_lots, r.dres, r.duplicates), (3, 2, 1));
    // A lot without DREs gives none.
    assert!(DreLot::from_signed(&sample_lot("L-none", 3))
        .unwrap()
        .is_empty());
}

#[test]
fn the_report_shows_lots_over_time_and_rejections_by_reason() {
    let mut ins = Insurer::new("011751000");
    ins.receive(&sample_lot("L-a", 2).to_der().unwrap());
    ins.receive(b"junk");
    let json = ins.full_report();
    assert_eq!(json["summary"]["received"], 2);
    assert_eq!(json["lots"].as_array().unwrap().len(), 2);
    assert_eq!(json["timeline"][0]["sheets"], 2);
    assert_eq!(json["summary"]["rejections"]["LOT_MALFORMED"], 1);
    let html = report_html(&json);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<polyline id=\"sheets\""));
    assert!(html.contains(">LOT_MALFORMED</text>"));
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    let dir = tempfile::tempdir().unwrap();
    write_report(&ins, dir.path()).unwrap();
    let back: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(back, json);
    assert!(dir.path().join("report.html").exists());
}

#[test]
fn spool_answers_every_lot_file() {
    let dir = tempfile::tempdir().unwrap();
    let (out, inb) = (dir.path().join("out"), dir.path().join("in"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&inb).unwrap();
    std::fs::write(out.join("L4.lot"), sample_lot("L4", 1).to_der().unwrap()).unwrap();
    std::fs::write(out.join("bad.lot"), b"junk").unwrap();
    std::fs::write(out.join(".L6.lot.tmp"), b"half written").unwrap();
    std::fs::write(out.join("notes.txt"), b"not a lot").unwrap();
    std::fs::create_dir(out.join("dir.lot")).unwrap();
    let mut ins = Insurer::new("i");
    let pass = spool_pass(&mut ins, &out, &inb).unwrap();
    assert_eq!((pass.answered, pass.failed.len()), (2, 0));
    let good = signed_arl(&std::fs::read(inb.join("L4.arl")).unwrap(), "i");
    assert_eq!(good.status, ArlStatus::Positive);
    let bad = signed_arl(&std::fs::read(inb.join("bad.arl")).unwrap(), "i");
    assert_eq!(
        (bad.lot_id.as_str(), bad.status),
        ("bad", ArlStatus::Negative)
    );
    let mut left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [".L6.lot.tmp", "dir.lot", "notes.txt"]);
    let mut arls: Vec<String> = std::fs::read_dir(&inb)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    arls.sort();
    assert_eq!(arls, ["L4.arl", "bad.arl"], "no temporary file left");
}

#[test]
fn a_lot_whose_arl_cannot_be_written_stays_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("L7.lot"), sample_lot("L7", 1).to_der().unwrap()).unwrap();
    let missing_inbox = dir.path().join("no-such-inbox");
    let mut ins = Insurer::new("i");
    let pass = spool_pass(&mut ins, &out, &missing_inbox).unwrap();
    assert_eq!((pass.answered, pass.failed.len()), (0, 1));
    assert!(out.join("L7.lot").exists());
    // Once the inbox exists the lot is answered, with the same ARL.
    std::fs::create_dir_all(&missing_inbox).unwrap();
    assert_eq!(
        spool_pass(&mut ins, &out, &missing_inbox).unwrap().answered,
        1
    );
    assert_eq!(ins.report().duplicates, 1);
    assert!(spool_pass(&mut ins, &dir.path().join("gone"), &missing_inbox).is_err());
}

#[tokio::test]
async fn spool_mode_serves_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (out, inb) = (dir.path().join("out"), dir.path().join("in"));
    let ins = Arc::new(Mutex::new(Insurer::new("i")));
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(run_spool(out.clone(), inb.clone(), Arc::clone(&ins), stop));
    while !out.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    write_atomic(&out, "L8.lot", &sample_lot("L8", 2).to_der().unwrap()).unwrap();
    let arl_path = inb.join("L8.arl");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !arl_path.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let arl = Arl::from_der(&std::fs::read(&arl_path).unwrap());
    assert!(arl.is_err(), "an ARL travels signed, never bare");
    let arl = SignedReturn::from_der(&std::fs::read(&arl_path).unwrap()).unwrap();
    let ReturnContent::Arl(arl) = arl.content else {
        panic!("not an ARL")
    };
    assert_eq!(
        (arl.lot_id.as_str(), arl.status),
        ("L8", ArlStatus::Positive)
    );
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ins.lock().unwrap().report().positive, 1);
}

#[test]
fn credentials_never_show() {
    assert_eq!(
        redact("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
        "amqp://***@127.0.0.1:5672/%2f"
    );
    let cfg = AmqpInsurerConfig {
        url: "amqp://u:s3cret@h/".into(),
        binding: "#".into(),
        insurer: "i".into(),
        copies: 1,
        kind: InsurerKind::Amo,
    };
    assert!(!format!("{cfg:?}").contains("s3cret"));
}

#[tokio::test]
async fn an_unparsable_url_fails_at_once_without_its_password() {
    let cfg = AmqpInsurerConfig {
        url: "amqp://u:s3cret@[::1".into(),
        binding: "#".into(),
        insurer: "i".into(),
        copies: 1,
        kind: InsurerKind::Amo,
    };
    let (_stop_tx, stop) = watch::channel(false);
    let ins = Arc::new(Mutex::new(Insurer::new("i")));
    let err = run_amqp(cfg, ins, stop, None).await.unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn the_insurer_answers_as_its_binding_when_it_is_an_organism() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        a: InsurerArgs,
    }
    let args = |binding: &str, insurer: Option<&str>| {
        let mut a = <Cli as clap::Parser>::parse_from(["insurer", "--binding", binding]).a;
        a.insurer = insurer.map(Into::into);
        a
    };
    assert_eq!(args("017510001", None).insurer_name(), "017510001");
    assert_eq!(args("#", None).insurer_name(), DEFAULT_INSURER);
    assert_eq!(args("0175.*", None).insurer_name(), DEFAULT_INSURER);
    assert_eq!(args("#", Some("x")).insurer_name(), "x");
}

/// The RabbitMQ broker the tests run against (started by `tests/run`).
const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A 9-digit organism code of its own for each test run.
fn unique_binding() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "9{:08}",
        (nanos ^ std::process::id().rotate_left(16)) % 100_000_000
    )
}

/// The sender's side of the AMQP test: a temporary reply queue consumed, lots published to
/// the insurer's binding with or without `reply_to`.
struct Sender {
    conn: Connection,
    ch: lapin::Channel,
    reply: lapin::types::ShortString,
    arls: lapin::Consumer,
    binding: String,
}

impl Sender {
    async fn open(binding: &str) -> Sender {
        let conn = Connection::connect(URL, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let reply = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let reply = reply.name().clone();
        let arls = ch
            .basic_consume(
                reply.clone(),
                "test".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        Sender {
            conn,
            ch,
            reply,
            arls,
            binding: binding.to_string(),
        }
    }

    /// Publishes `body` as lot `id`, with the reply queue as `reply_to` when `answered`.
    async fn publish(&self, body: Vec<u8>, id: &str, answered: bool) {
        let mut props = BasicProperties::default()
            .with_message_id(id.into())
            .with_type(wire::TYPE_LOT.into());
        if answered {
            props = props.with_reply_to(self.reply.clone());
        }
        let confirm = self
            .ch
            .basic_publish(
                wire::EXCHANGE_AMO.into(),
                self.binding.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(confirm, Confirmation::Ack(None), "routed to the insurer");
    }

    /// The next ARL on the reply queue, its properties and signature checked.
    async fn next_arl(&mut self) -> Arl {
        let d = tokio::time::timeout(Duration::from_secs(20), self.arls.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            d.properties.kind().as_ref().unwrap().as_str(),
            wire::TYPE_ARL
        );
        assert_eq!(d.properties.delivery_mode(), &Some(2));
        assert_eq!(
            d.properties.content_type().as_ref().unwrap().as_str(),
            wire::CONTENT_TYPE_DER
        );
        let arl = signed_arl(&d.data, &self.binding);
        assert_eq!(
            d.properties.message_id().as_ref().unwrap().as_str(),
            arl.lot_id
        );
        arl
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_lots_are_answered_on_their_reply_to_with_a_confirm() {
    let binding = unique_binding();
    let ins = Arc::new(Mutex::new(Insurer::new(&binding)));
    let (stop_tx, stop) = watch::channel(false);
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let cfg = AmqpInsurerConfig {
        url: URL.into(),
        binding: binding.clone(),
        insurer: binding.clone(),
        copies: 1,
        kind: InsurerKind::Amo,
    };
    let task = tokio::spawn(run_amqp(cfg, Arc::clone(&ins), stop, Some(ready_tx)));
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .unwrap()
        .unwrap();
    let mut sender = Sender::open(&binding).await;

    let lot = sample_lot(&format!("LOT-{binding}"), 2);
    let der = lot.to_der().unwrap();
    // A lot without reply_to is taken (acked) but has nobody to answer.
    sender.publish(der.clone(), &lot.header.lot_id, false).await;
    sender.publish(der.clone(), &lot.header.lot_id, true).await;
    let first = sender.next_arl().await;
    assert_eq!(
        (first.lot_id.as_str(), first.status, first.insurer.as_str()),
        (
            lot.header.lot_id.as_str(),
            ArlStatus::Positive,
            binding.as_str()
        )
    );
    assert_eq!(first.merkle_root, hex::encode(lot.header.merkle_root));
    // Sent again: the identical ARL.
    sender.publish(der.clone(), &lot.header.lot_id, true).await;
    assert_eq!(sender.next_arl().await, first);
    // Malformed: negative, named after the message id.
    sender.publish(b"junk".to_vec(), "LOT-BAD", true).await;
    let bad = sender.next_arl().await;
    assert_eq!(
        (
            bad.lot_id.as_str(),
            bad.status,
            bad.rejections[0].code.as_str()
        ),
        ("LOT-BAD", ArlStatus::Negative, "LOT_MALFORMED")
    );

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let report = ins.lock().unwrap().report();
    assert_eq!(
        (
            report.received,
            report.duplicates,
            report.positive,
            report.negative
        ),
        (4, 2, 1, 1)
    );
    // Every lot was acked: the insurer's queue is empty; remove it.
    let purged = sender
        .ch
        .queue_delete(
            wire::insurer_queue("amo", &binding).as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(purged, 0, "no lot left unacknowledged");
    let _ = sender.conn.close(200, "done".into()).await;
}
