//! Supporting documents (SCOR) end to end. Over the real broker (full tier): a sheet and a PNG
//! scanned at 300 dpi → the lot signed with the document's reference (its hash = SHA-256 of
//! the file, read back from the signed header), the attachment lot sent, the insurer's ARL
//! positive, the document acknowledged; an attachment lot whose content does not match the
//! signed hash, published by the test, gets a negative ARL `ATTACHMENT_HASH`. Over the spool
//! (fast tier): a 72-dpi image and a text file named `.pdf` refused with their field and
//! reason, and the alarm of a degraded-mode sheet without its paper (`degraded_paper_days =
//! 0`: due the day it is made), in the doctor and as `sheet.paper_missing`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// CRC-32 (ISO-HDLC, as PNG uses), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    out.extend_from_slice(&typed);
    out.extend(crc32(&typed).to_be_bytes());
}

/// A 1×1 grey PNG with `ppm` pixels per metre on both axes (`pHYs`, unit the metre).
fn png(ppm: u32) -> Vec<u8> {
    png_with_text(ppm, 0)
}

/// [`png`] with a `tEXt` chunk of `text` bytes (a scan's size without its pixels).
fn png_with_text(ppm: u32, text: usize) -> Vec<u8> {
    let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut p, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
    if text > 0 {
        let mut t = b"Comment\0".to_vec();
        t.resize(text, b'x');
        chunk(&mut p, b"tEXt", &t);
    }
    let mut phys = ppm.to_be_bytes().to_vec();
    phys.extend(ppm.to_be_bytes());
    phys.push(1);
    chunk(&mut p, b"pHYs", &phys);
    // zlib of the one scanline (filter 0, grey 0): stored block.
    chunk(
        &mut p,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x02, 0x00, 0xFD, 0xFF, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01,
        ],
    );
    chunk(&mut p, b"IEND", &[]);
    p
}

/// 300 dpi: 11811 px/m × 0.0254 m/in = 299.9994 → 300.
const PPM_300_DPI: u32 = 11811;
/// 72 dpi: 2835 px/m × 0.0254 = 72.009 → 72.
const PPM_72_DPI: u32 = 2835;

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn refusal(reply: &Value) -> (String, String, String) {
    let d = &reply["error"]["data"];
    (
        d["name"].as_str().unwrap_or_default().into(),
        d["field"].as_str().unwrap_or_default().into(),
        d["reason"].as_str().unwrap_or_default().into(),
    )
}

/// A 72-dpi PNG, text named `.pdf`, an unknown kind and an unknown sheet: each refused
/// with its field and reason.
fn refusals(rpc: &mut common::Rpc, id: i64) {
    let low = rpc.call(
        "fse.attach",
        json!({"id": id, "kind": "degraded_paper", "content": base64(&png(PPM_72_DPI))}),
    );
    assert_eq!(
        refusal(&low),
        (
            "ATTACHMENT_REFUSED".into(),
            "content".into(),
            "resolution".into()
        ),
        "{low}"
    );
    assert_eq!(low["error"]["code"], 1053);
    let text = rpc.call(
        "fse.attach",
        json!({"id": id, "kind": "prescription", "name": "ordonnance.pdf",
               "content": base64(b"Ordonnance: 10 seances de kine\n")}),
    );
    assert_eq!(
        refusal(&text),
        ("ATTACHMENT_REFUSED".into(), "content".into(), "type".into()),
        "{text}"
    );
    let kind = rpc.call(
        "fse.attach",
        json!({"id": id, "kind": "xray", "content": base64(&png(PPM_300_DPI))}),
    );
    assert_eq!(refusal(&kind).1, "kind", "{kind}");
    let missing = rpc.call(
        "fse.attach",
        json!({"id": 999, "kind": "other", "content": base64(&png(PPM_300_DPI))}),
    );
    assert_eq!(missing["error"]["data"]["name"], "NOT_FOUND", "{missing}");
}

/// The doctor's `paper_missing` check.
fn papers_check(rpc: &mut common::Rpc) -> Value {
    let doctor = rpc.ok("system.doctor", json!({}));
    doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "paper_missing")
        .unwrap()
        .clone()
}

#[test]
fn bad_documents_are_refused_and_a_degraded_sheet_without_its_paper_raises_the_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_fsed, mut rpc) =
        common::start_fsed_virtual(d, 2, "[attachments]\ndegraded_paper_days = 0\n", &[]);
    let _cards = common::start_fast_cards_on(d, &[]).0;
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let sheet = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "tiers_payant": {"amo": true},
               "degraded": {"reason": "carte oubliée", "beneficiary":
                 {"nir": "185057800608491", "surname": "DUPONT", "given_name": "Jean",
                  "birth_date": "19850512", "rank": 1, "organism": "017510001"}}}),
    );
    assert_eq!(sheet["sheet"]["mode"], "degraded", "{sheet}");
    let id = sheet["id"].as_i64().unwrap();

    refusals(&mut rpc, id);
    // Nothing was stored.
    assert_eq!(
        rpc.ok("fse.get", json!({"id": id}))["attachments"],
        json!([])
    );

    // Made today with 0 days allowed: the paper is missing now.
    let papers = papers_check(&mut rpc);
    assert_eq!(papers["status"], "warning", "{papers}");
    assert!(
        papers["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("sheet {id} ")),
        "{papers}"
    );
    let mut watcher = common::Rpc::connect(&d.join("fsed.sock"), Duration::from_secs(5));
    watcher.ok(
        "events.subscribe",
        json!({"events": ["sheet.paper_missing"]}),
    );
    rpc.ok("lots.close", json!({}));
    let event = watcher.wait_event("sheet.paper_missing");
    assert_eq!(event["sheet_id"], json!(id), "{event}");
    assert_eq!(event["days"], 0, "{event}");

    // The paper, scanned at 300 dpi: stored, once for the same bytes, and the alarm ends.
    let file = png(PPM_300_DPI);
    let att = rpc.ok(
        "fse.attach",
        json!({"id": id, "kind": "degraded_paper", "content": base64(&file)}),
    );
    assert_eq!(att["media_type"], "image/png");
    assert_eq!(att["dpi"], json!([300, 300]));
    assert_eq!(att["sha256"], hex::encode(Sha256::digest(&file)));
    assert_eq!(att["new"], true);
    let again = rpc.ok(
        "fse.attach",
        json!({"id": id, "kind": "degraded_paper", "content": base64(&file)}),
    );
    assert_eq!(
        (again["id"].clone(), again["new"].clone()),
        (att["id"].clone(), json!(false))
    );
    // A scan of 4 MiB: its line (5.6 MB of base64) is over the 64 KiB of other requests.
    let big = png_with_text(PPM_300_DPI, 4 << 20);
    let att = rpc.ok(
        "fse.attach",
        json!({"id": id, "kind": "other", "content": base64(&big)}),
    );
    assert_eq!(att["size"], big.len(), "{att}");
    // Another method's line as long, even naming fse.attach inside, is refused.
    let long = rpc.raw(&format!(
        r#"{{"jsonrpc":"2.0","id":40,"method":"fse.get","params":{{"id":{id},"method":"fse.attach","pad":"{}"}}}}"#,
        "x".repeat(70_000)
    ));
    assert_eq!(long["error"]["data"]["limit"], 65536, "{long}");
    let got = rpc.ok("fse.get", json!({"id": id}));
    assert_eq!(got["attachments"].as_array().unwrap().len(), 2, "{got}");
    let listed = rpc.ok("fse.list", json!({}));
    assert_eq!(listed[0]["attachments"], 2, "{listed}");
    let papers = papers_check(&mut rpc);
    assert_eq!(papers["status"], "ok", "{papers}");
}

#[cfg(feature = "full")]
mod broker {
    use super::*;

    use common::wait_for;
    use fse_formats::ack::{ArlStatus, ReturnContent, SignedReturn};
    use fse_formats::attachment::{AttachmentEntry, AttachmentLot};
    use fse_formats::lot::LotHeader;
    use fse_formats::wire;
    use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Publishes `lot` to the AMO exchange as fsed would, its replies to a queue of the
    /// test's own; returns the insurer's ARL from there.
    fn insurer_answer(lot: &AttachmentLot) -> fse_formats::ack::Arl {
        let reply_to = format!("test.attachments.{}", common::unique());
        let der = lot.to_der().unwrap();
        block_on(async {
            let conn =
                lapin::Connection::connect(common::AMQP, lapin::ConnectionProperties::default())
                    .await
                    .unwrap();
            let ch = conn.create_channel().await.unwrap();
            ch.queue_declare(
                reply_to.as_str().into(),
                QueueDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
            ch.basic_publish(
                wire::EXCHANGE_AMO.into(),
                lot.destination.as_str().into(),
                BasicPublishOptions::default(),
                &der,
                lapin::BasicProperties::default()
                    .with_type(wire::TYPE_ATTACHMENT_LOT.into())
                    .with_message_id(lot.lot_id.as_str().into())
                    .with_reply_to(reply_to.as_str().into()),
            )
            .await
            .unwrap();
            let end = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let got = ch
                    .basic_get(reply_to.as_str().into(), BasicGetOptions { no_ack: true })
                    .await
                    .unwrap();
                if let Some(m) = got {
                    let _ = conn.close(200, "done".into()).await;
                    match SignedReturn::from_der(&m.delivery.data).unwrap().content {
                        ReturnContent::Arl(a) => return a,
                        other => panic!("not an ARL: {other:?}"),
                    }
                }
                assert!(std::time::Instant::now() < end, "no ARL from the insurer");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    #[test]
    fn a_document_travels_signed_and_acknowledged_and_a_swapped_one_is_refused() {
        let _turn = common::shared_services();
        let dir = tempfile::tempdir().unwrap();
        let (profile, destination) = common::vitale_of_new_centre(dir.path());
        let (_sim, _control) =
            common::start_fast_cards(dir.path(), &["--vitale-profile", profile.to_str().unwrap()]);
        let _amo = common::start_insurer(&["--binding", &destination]);
        let return_queue = format!("fsed.returns.scor.{}", common::unique());
        // Lots close when asked (10 sheets or an hour otherwise): the document is attached
        // before its sheet's lot is signed.
        let (mut fsed, mut rpc) = common::start_fsed_amqp(dir.path(), &return_queue, 10, 3600);
        common::wait_cards(&mut rpc, 2);
        rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
        let sheet = rpc.ok(
            "fse.create",
            json!({"act": {"code": "G"}, "tiers_payant": {"amo": true}}),
        );
        let id = sheet["id"].as_i64().unwrap();
        let file = png(PPM_300_DPI);
        let att = rpc.ok(
            "fse.attach",
            json!({"id": id, "kind": "prescription", "name": "scan.jpg", "content": base64(&file)}),
        );
        assert_eq!(att["state"], "stored", "{att}");
        rpc.ok("lots.close", json!({}));
        let done = wait_for("the document acknowledged", Duration::from_secs(60), || {
            let got = rpc.ok("fse.get", json!({"id": id}));
            (got["attachments"][0]["state"] == "acknowledged").then_some(got)
        });
        let a = &done["attachments"][0];
        let lot_id = done["lot_id"].as_str().unwrap().to_string();
        assert_eq!(a["signed_lot_id"], json!(lot_id), "{done}");
        let number = lot_id.rsplit_once('-').unwrap().1;
        let practitioner = lot_id.rsplit_once('-').unwrap().0;
        assert_eq!(
            a["attachment_lot_id"],
            json!(format!("{practitioner}-A{number}")),
            "{done}"
        );
        // The signed header references the file: its SHA-256, computed here.
        let proof = rpc.ok("fse.proof", json!({"id": id}));
        let header =
            LotHeader::from_der(&hex::decode(proof["header"].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(header.attachments.len(), 1);
        let reference = header.attachments[0].clone();
        assert_eq!(reference.sha256, <[u8; 32]>::from(Sha256::digest(&file)));
        assert_eq!(reference.size, file.len() as u64);
        assert_eq!(reference.media_type, "image/png");
        assert_eq!(reference.sheet_number, sheet["number"].as_u64().unwrap());

        // The same reference with other bytes: refused by the insurer.
        let mut swapped = file.clone();
        let last = swapped.len() - 5;
        swapped[last] ^= 0x01;
        let arl = insurer_answer(&AttachmentLot {
            lot_id: format!("{practitioner}-A99999999"),
            practitioner_id: practitioner.into(),
            destination: destination.clone(),
            signed_lot_id: lot_id.clone(),
            entries: vec![AttachmentEntry {
                reference,
                content: swapped,
            }],
        });
        assert_eq!(arl.status, ArlStatus::Negative, "{arl:?}");
        let codes: Vec<&str> = arl.rejections.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["ATTACHMENT_HASH"], "{arl:?}");
        assert!(fsed.terminate().success());
        common::delete_queues(&[&wire::insurer_queue("amo", &destination), &return_queue]);
    }
}
