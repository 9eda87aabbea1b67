//! fsed's DER checked by an independent ASN.1 implementation: Python's
//! asn1tools compiles `formats/asn1/fsed.asn` and decodes, then re-encodes
//! byte for byte, every structure fsed and the insurer simulator write — a
//! signed lot with its header and sheets, sheets in secured and degraded
//! mode, positive and negative ARLs, a DRE lot, a payment return, a lot header
//! referencing supporting documents and an attachment lot — and every
//! golden sheet and DRE under
//! `tests/golden/`. `tests/run` installs asn1tools in a
//! virtual environment (`target/asn1-venv`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use fse_formats::fse::CareSheet;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Python with asn1tools: `FSED_ASN1_PYTHON`, else the virtual environment `tests/run` makes.
fn python() -> PathBuf {
    std::env::var_os("FSED_ASN1_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/asn1-venv/bin/python"))
}

fn write(dir: &Path, type_name: &str, name: &str, der: &[u8]) {
    std::fs::write(dir.join(format!("{type_name}--{name}.der")), der).unwrap();
}

#[test]
fn asn1tools_decodes_and_reencodes_every_structure_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    write_lot_structures(dir.path());
    let goldens = write_goldens(dir.path());
    check_with_asn1tools(dir.path(), goldens);
}

/// The structures fsed and the insurer simulator write: a signed lot, its header and sheets
/// (secured and degraded), a positive and a negative ARL, a DRE lot, a payment return and both
/// returns as signed by their insurer.
fn write_lot_structures(dir: &Path) {
    let lot = fse_simulator::insurer::sample_lot("81000000000-00000001", 3);
    let lot_der = lot.to_der().unwrap();
    write(dir, "SignedLot", "three-sheets", &lot_der);
    write(
        dir,
        "LotHeader",
        "three-sheets",
        &lot.header.to_der().unwrap(),
    );
    for (i, e) in lot.entries.iter().enumerate() {
        write(dir, "CareSheet", &format!("secured-{i}"), &e.sheet);
        let mut degraded = CareSheet::from_der(&e.sheet).unwrap();
        degraded.mode = fse_formats::fse::Mode::Degraded;
        degraded.presence = None;
        write(
            dir,
            "CareSheet",
            &format!("degraded-{i}"),
            &degraded.to_der().unwrap(),
        );
    }
    write_version_3_sheets(dir, &lot.entries[0].sheet);
    write_app_structures(dir);
    write_rights_samples(dir);
    let positive = fse_simulator::insurer::answer_lot(&lot_der, "017510001", "20261122120000Z");
    assert!(positive.rejections.is_empty());
    write(dir, "Arl", "positive", &positive.to_der().unwrap());
    let mut tampered = lot_der.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let negative = fse_simulator::insurer::answer_lot(&tampered, "017510001", "20261122120000Z");
    assert!(!negative.rejections.is_empty());
    write(dir, "Arl", "negative", &negative.to_der().unwrap());

    write_attachment_structures(dir, &lot);

    // A DRE lot (two DREs with their sheets' audit paths) and a payment return.
    let with_dres =
        fse_simulator::insurer::sample_lot_with_dres("81000000000-00000002", 4, "75500017")
            .unwrap();
    let dre_lots = fse_formats::dre_lot::DreLot::from_signed(&with_dres).unwrap();
    write(dir, "DreLot", "two-dres", &dre_lots[0].to_der().unwrap());
    let mut payments = fse_simulator::insurer::Insurer::new("017510001").with_knobs(
        fse_simulator::insurer::Knobs {
            payments: true,
            refuse_payments_percent: 50,
            ..Default::default()
        },
    );
    payments.receive(&lot_der);
    let ret = payments.payment_return(&lot.header.lot_id).unwrap();
    write(dir, "PaymentReturn", "three-sheets", &ret.to_der().unwrap());
    // Both as they travel: signed by their insurer, with its certificate.
    use fse_formats::ack::ReturnContent;
    use fse_simulator::insurer::sign_return;
    write(
        dir,
        "SignedReturn",
        "arl",
        &sign_return(ReturnContent::Arl(positive.clone())).unwrap(),
    );
    write(
        dir,
        "SignedReturn",
        "payment",
        &sign_return(ReturnContent::Payment(ret.clone())).unwrap(),
    );
}

/// The Vitale app's structures as `fse-sim app` and fsed make them: a token (and its signed
/// body) of the test app, and an app sheet carrying such a token.
fn write_app_structures(dir: &Path) {
    let lot = fse_simulator::insurer::sample_app_lot("81000000000-00000003", 1).unwrap();
    let sheet = CareSheet::from_der(&lot.entries[0].sheet).unwrap();
    write(dir, "CareSheet", "app-with-token", &lot.entries[0].sheet);
    let token_der = hex::decode(&sheet.app_presence.unwrap().token).unwrap();
    write(dir, "AppToken", "test-app", &token_der);
    let token = fse_formats::app::AppToken::from_der(&token_der).unwrap();
    write(
        dir,
        "AppTokenBody",
        "test-app",
        &token.body.to_der().unwrap(),
    );
}

/// Version 3 sheets made from `secured` (a version 2 sheet): priced on an online answer, on
/// the card's rights after a failed lookup, and vouched for by the Vitale app.
fn write_version_3_sheets(dir: &Path, secured: &[u8]) {
    use fse_formats::fse::{AppPresence, Mode, RightsOrigin, RightsSource};
    let base = CareSheet::from_der(secured).unwrap();
    let mut online = base.clone();
    online.rights = Some(RightsOrigin {
        source: RightsSource::Online,
        read_at: "20261122101459Z".into(),
        answer_digest: Some("5a".repeat(32)),
        fallback: None,
    });
    write(dir, "CareSheet", "v3-online", &online.to_der().unwrap());
    let mut fallback = base.clone();
    fallback.rights = Some(RightsOrigin {
        source: RightsSource::Card,
        read_at: "20261122101500Z".into(),
        answer_digest: None,
        fallback: Some("rights service unreachable".into()),
    });
    write(
        dir,
        "CareSheet",
        "v3-card-fallback",
        &fallback.to_der().unwrap(),
    );
    let mut app = base;
    app.mode = Mode::App;
    app.presence = None;
    app.rights = Some(RightsOrigin {
        source: RightsSource::App,
        read_at: "20261122101400Z".into(),
        answer_digest: None,
        fallback: None,
    });
    app.app_presence = Some(AppPresence {
        token: "3003020101".into(),
    });
    write(dir, "CareSheet", "v3-app", &app.to_der().unwrap());
}

/// A version 2 lot header referencing two documents, a signed lot with it, and the
/// attachment lot carrying them.
fn write_attachment_structures(dir: &Path, lot: &fse_formats::lot::SignedLot) {
    use fse_formats::attachment::{AttachmentEntry, AttachmentKind, AttachmentLot, AttachmentRef};
    let docs: [(&[u8], AttachmentKind, &str); 2] = [
        (
            b"%PDF-1.4\n%%EOF\n",
            AttachmentKind::Prescription,
            "application/pdf",
        ),
        (
            b"\x89PNG\r\n\x1a\n",
            AttachmentKind::DegradedPaper,
            "image/png",
        ),
    ];
    let entries: Vec<AttachmentEntry> = docs
        .iter()
        .enumerate()
        .map(|(i, (content, kind, media))| AttachmentEntry {
            reference: AttachmentRef {
                sheet_number: i as u64 + 1,
                kind: *kind,
                media_type: (*media).into(),
                size: content.len() as u64,
                sha256: [i as u8 + 1; 32],
            },
            content: content.to_vec(),
        })
        .collect();
    let mut v2 = lot.clone();
    v2.header.attachments = entries.iter().map(|e| e.reference.clone()).collect();
    write(
        dir,
        "LotHeader",
        "with-attachments",
        &v2.header.to_der().unwrap(),
    );
    write(dir, "SignedLot", "with-attachments", &v2.to_der().unwrap());
    let att = AttachmentLot {
        lot_id: AttachmentLot::id(&lot.header.practitioner_id, 1),
        practitioner_id: lot.header.practitioner_id.clone(),
        destination: lot.header.destination.clone(),
        signed_lot_id: lot.header.lot_id.clone(),
        entries,
    };
    write(
        dir,
        "AttachmentLot",
        "two-documents",
        &att.to_der().unwrap(),
    );
}

/// Rights online: a request, a found answer with a coverage and an AMC (vitale-amc-tiers-payant's
/// beneficiary as the insurer simulator answers it), an unknown one, and one as it travels.
fn write_rights_samples(dir: &Path) {
    use fse_formats::rights::{RightsRequest, RightsStatus};
    use fse_simulator::insurer::rights::{answer_request, sign_answer};
    use fse_simulator::insurer::RightsKnobs;
    let card = match fse_simulator::profiles::Profile::load("vitale-amc-tiers-payant").unwrap() {
        fse_simulator::profiles::Profile::Vitale(v) => v.data(),
        _ => unreachable!("a Vitale profile"),
    };
    let b = &card.beneficiaries[0];
    let request = RightsRequest {
        request_id: "00112233445566778899aabbccddeeff".into(),
        nir: b.nir.clone(),
        birth_date: b.birth_date.clone(),
        rank: b.rank,
        practitioner_id: "810000000009".into(),
        asked_at: "20261207101500Z".into(),
    };
    write(dir, "RightsRequest", "amc", &request.to_der().unwrap());
    let knobs = RightsKnobs::default();
    let found = answer_request(&request, &knobs, chrono::Utc::now());
    assert_eq!(found.status, RightsStatus::Found);
    assert!(found.amc.is_some(), "{found:?}");
    write(dir, "RightsAnswer", "found", &found.to_der().unwrap());
    let unknown = RightsKnobs {
        unknown: vec![b.nir.clone()],
        ..RightsKnobs::default()
    };
    let answer = answer_request(&request, &unknown, chrono::Utc::now());
    write(dir, "RightsAnswer", "unknown", &answer.to_der().unwrap());
    write(
        dir,
        "SignedReturn",
        "rights",
        &sign_answer(found, &knobs).unwrap(),
    );
}

/// Every golden sheet and DRE: tests/golden/<case>/sheet.der.hex, dre.der.hex; returns how many.
fn write_goldens(dir: &Path) -> usize {
    let golden = workspace().join("tests/golden");
    let mut goldens = 0;
    let mut cases: Vec<_> = std::fs::read_dir(&golden).unwrap().flatten().collect();
    cases.sort_by_key(|c| c.file_name());
    for case in cases {
        let name = case.file_name().to_string_lossy().into_owned();
        for (file, type_name) in [("sheet.der.hex", "CareSheet"), ("dre.der.hex", "Dre")] {
            if let Ok(text) = std::fs::read_to_string(case.path().join(file)) {
                let bytes = hex::decode(text.trim()).unwrap();
                write(dir, type_name, &format!("golden-{name}"), &bytes);
                goldens += 1;
            }
        }
    }
    assert!(goldens >= 30, "{goldens} golden DER files");
    goldens
}

/// Runs `tests/asn1/check.py` over `dir` and checks every file decoded and re-encoded.
fn check_with_asn1tools(dir: &Path, goldens: usize) {
    let out = Command::new(python())
        .arg(workspace().join("tests/asn1/check.py"))
        .arg(workspace().join("formats/asn1/fsed.asn"))
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (tests/run installs asn1tools in target/asn1-venv)",
                python().display()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "asn1tools disagrees:\n{text}");
    let ok = text.lines().filter(|l| l.starts_with("ok ")).count();
    // Every file written: the samples and the goldens, each decoded and re-encoded.
    let written = std::fs::read_dir(dir).unwrap().count();
    assert!(written > goldens, "{written} files, {goldens} goldens");
    assert_eq!(ok, written, "{text}");
}
