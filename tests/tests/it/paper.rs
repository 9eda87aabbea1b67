//! The paper duplicate (`fse.duplicate`, `[paper]`): fsed on its embedded virtual reader and the
//! spool. A degraded-mode sheet gets its PDF by itself; one in a signed lot names its lot; an
//! unsent sheet at its sending deadline gets its PDF by itself; an unknown sheet is not found;
//! `fsectl fse duplicate --out` copies the file. The PDFs are read back by `pdftotext`
//! (Debian's poppler-utils: full tier), an independent reader.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fse_formats::calendar::{sending_deadline, Payment, Region};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{self, Rpc};

/// The CPS of the simulated cards: Dr MARTIN, national id 810000000009.
const MARTIN: &str = "810000000009";

/// A second connection, subscribed to the paper duplicates only.
fn paper_events(dir: &Path) -> Rpc {
    let mut events = Rpc::connect(&dir.join("fsed.sock"), Duration::from_secs(5));
    events.ok(
        "events.subscribe",
        json!({"events": ["sheet.paper_duplicate"]}),
    );
    events
}

/// The file an event or an answer names, checked against its SHA-256 and mode 0640.
fn checked_file(path: &Value, sha256: &Value) -> Vec<u8> {
    let path = Path::new(path.as_str().unwrap());
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"%PDF-"), "{}", path.display());
    assert_eq!(json!(hex::encode(Sha256::digest(&bytes))), *sha256);
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "{}", path.display());
    bytes
}

/// The oldest date of care (up to 19 days back) whose sheet, patient paying, is still on time
/// today, and its sending deadline: the nearest deadline a sheet made today can have.
fn date_near_its_deadline() -> (chrono::NaiveDate, chrono::NaiveDate) {
    let today = chrono::Utc::now().date_naive();
    (1..20)
        .rev()
        .map(|back| today - chrono::Duration::days(back))
        .find_map(|d| {
            sending_deadline(d, Payment::PatientPaid, Region::Metropole)
                .filter(|deadline| *deadline >= today)
                .map(|deadline| (d, deadline))
        })
        .unwrap()
}

#[test]
fn an_unsent_sheet_at_its_deadline_gets_its_paper_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A sheet dated as far back as it may be: its deadline is `days` days from today. With
    // `days_before` that many days, today is its deadline day for the paper; fsed looks every
    // second.
    let (date, deadline) = date_near_its_deadline();
    let days = (deadline - chrono::Utc::now().date_naive()).num_days();
    let config = format!("[paper]\ndays_before = {days}\ncheck_secs = 1\n");
    let (_fsed, mut rpc) = common::start_fsed_virtual(
        d,
        2,
        &config,
        &["--lot-max-sheets", "100", "--lot-max-age-secs", "3600"],
    );
    // Nothing leaves: the spool's outbox is a file (the lot, if its deadline closes it, stays
    // signed), so the sheet stays unsent.
    let outbox = d.join("spool/outbox");
    std::fs::remove_dir(&outbox).unwrap();
    std::fs::write(&outbox, b"not a directory").unwrap();
    let _cards = common::start_fast_cards_on(d, &[]).0;
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let mut events = paper_events(d);
    let made = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G", "date": date.format("%Y%m%d").to_string()}}),
    );
    assert_eq!(made["sheet"]["mode"], "secured");
    assert_eq!(
        made["sheet"]["deadline"],
        json!(deadline.format("%Y%m%d").to_string())
    );
    let ev = events.wait_event("sheet.paper_duplicate");
    assert_eq!(
        (&ev["sheet_id"], &ev["trigger"]),
        (&made["id"], &json!("deadline")),
        "{ev}"
    );
    let number = made["number"].as_u64().unwrap();
    let expected = d.join(format!("paper/{MARTIN}-{number}.pdf"));
    assert_eq!(ev["path"], json!(expected), "{ev}");
    checked_file(&ev["path"], &ev["sha256"]);
    let state = rpc.ok("fse.get", json!({"id": made["id"]}))["state"].clone();
    assert!(
        ["accepted", "in_lot", "signed"].contains(&state.as_str().unwrap()),
        "unsent: {state}"
    );
    // An unknown sheet has no paper.
    let r = rpc.call("fse.duplicate", json!({"id": 999_999}));
    assert_eq!(r["error"]["data"]["name"], "NOT_FOUND", "{r}");
    assert_eq!(r["error"]["data"]["field"], "id", "{r}");
    // Asked for with fsectl, copied where asked.
    let copy = d.join("copy.pdf");
    let out = Command::new(common::bin("fsectl"))
        .arg("--socket")
        .arg(d.join("fsed.sock"))
        .args(["fse", "duplicate", &made["id"].to_string(), "--out"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&expected).unwrap()
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("copy.pdf"), "{shown}");
}

/// The text `pdftotext -layout` reads in the PDF at `path`.
#[cfg(feature = "full")]
fn pdf_text(path: &Path) -> String {
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils)");
    assert!(
        out.status.success(),
        "pdftotext {}: {out:?}",
        path.display()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether one line of `text` holds `label` and, after it, `value`.
#[cfg(feature = "full")]
fn line_with(text: &str, label: &str, value: &str) -> bool {
    text.lines()
        .any(|l| l.find(label).is_some_and(|at| l[at..].contains(value)))
}

#[cfg(feature = "full")]
#[test]
fn a_degraded_sheet_prints_by_itself_and_its_signed_lot_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_fsed, mut rpc) = common::start_fsed_virtual(
        d,
        2,
        "",
        &["--lot-max-sheets", "100", "--lot-max-age-secs", "3600"],
    );
    let _cards = common::start_fast_cards_on(d, &[]).0;
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let mut events = paper_events(d);
    // Jean DUPONT (born 1985: the participation applies), typed from his paper attestation.
    let jean = json!({"nir": "185057800608491", "surname": "DUPONT", "given_name": "Jean",
        "birth_date": "19850512", "organism": "017510001"});
    let made = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "tiers_payant": {"amo": true},
               "degraded": {"reason": "carte oubliée", "beneficiary": jean}}),
    );
    let (id, number) = (made["id"].clone(), made["number"].as_u64().unwrap());
    let ev = events.wait_event("sheet.paper_duplicate");
    assert_eq!(
        (&ev["sheet_id"], &ev["trigger"]),
        (&id, &json!("degraded")),
        "{ev}"
    );
    assert_eq!(ev["lot_id"], Value::Null, "{ev}");
    checked_file(&ev["path"], &ev["sha256"]);
    let text = pdf_text(Path::new(ev["path"].as_str().unwrap()));
    degraded_paper_reads(&text, number);

    // In a signed lot (sent through the spool), the duplicate asked for names the lot.
    rpc.ok("lots.close", json!({}));
    let lot_id = common::wait_for("the sheet in a signed lot", Duration::from_secs(30), || {
        let s = rpc.ok("fse.get", json!({"id": id}));
        let signed = ["signed", "sent"].contains(&s["state"].as_str()?);
        signed.then(|| s["lot_id"].as_str().map(String::from))?
    });
    let asked = rpc.ok(
        "fse.duplicate",
        json!({"id": id, "reason": "envoi impossible avant la date limite"}),
    );
    assert_eq!(
        (
            &asked["id"],
            &asked["number"],
            &asked["lot_id"],
            &asked["path"]
        ),
        (&id, &json!(number), &json!(lot_id), &ev["path"]),
        "{asked}"
    );
    let bytes = checked_file(&asked["path"], &asked["sha256"]);
    assert_eq!(asked["size"], json!(bytes.len()));
    let ev = events.wait_event("sheet.paper_duplicate");
    assert_eq!(
        (&ev["trigger"], &ev["lot_id"]),
        (&json!("asked"), &json!(lot_id)),
        "{ev}"
    );
    let text = pdf_text(Path::new(asked["path"].as_str().unwrap()));
    assert!(line_with(&text, "Lot", &lot_id), "{text}");
    assert!(!text.contains("hors lot"), "{text}");
    assert!(
        line_with(
            &text,
            "Motif du duplicata",
            "envoi impossible avant la date limite"
        ),
        "{text}"
    );

    fsectl_copies(d, &id, &lot_id);
}

/// What the automatic duplicate of the degraded sheet `number` says, as `pdftotext` reads it.
#[cfg(feature = "full")]
fn degraded_paper_reads(text: &str, number: u64) {
    assert!(text.contains("Feuille de soins — duplicata"), "{text}");
    assert!(line_with(text, "Feuille n°", &number.to_string()), "{text}");
    assert!(line_with(text, "Lot", "hors lot"), "{text}");
    assert!(line_with(text, "Mode", "dégradé"), "{text}");
    assert!(
        line_with(text, "Motif du mode dégradé", "carte oubliée"),
        "{text}"
    );
    assert!(line_with(text, "NIR", "185057800608491"), "{text}");
    assert!(line_with(text, "Nom", "Jean DUPONT"), "{text}");
    assert!(
        line_with(text, "Parcours de soins", "médecin traitant"),
        "{text}"
    );
    // G: 30 € at 70 % = 21 €, less the 2 € participation: AMO 19,00 €; the patient bears
    // 30 − 19 = 11,00 € and, the AMO paying the doctor (tiers payant), pays him 11,00 €.
    assert!(line_with(text, "Total", "30,00 €"), "{text}");
    assert!(line_with(text, "Part AMO", "19,00 €"), "{text}");
    assert!(
        line_with(text, "Participation forfaitaire", "2,00 €"),
        "{text}"
    );
    assert!(line_with(text, "Part AMC", "0,00 €"), "{text}");
    assert!(line_with(text, "Part patient", "11,00 €"), "{text}");
    assert!(line_with(text, "Reste dû", "11,00 €"), "{text}");
    assert!(line_with(text, "Tiers payant", "AMO oui"), "{text}");
    // The act's row: code G, base 30,00 €, rate 70 %, its AMO share 30 × 70 % = 21,00 €
    // (the participation comes off the sheet's AMO share), participation 2,00 €.
    assert!(
        text.lines().any(|l| l.contains(" G ")
            && line_with(l, "30,00 €", "70 %")
            && line_with(l, "70 %", "21,00 €")
            && line_with(l, "21,00 €", "2,00 €")),
        "{text}"
    );
}

/// `fsectl fse duplicate --out` writes the duplicate of sheet `id`, in lot `lot_id`, where
/// asked; its text names the lot and the NIR.
#[cfg(feature = "full")]
fn fsectl_copies(d: &Path, id: &Value, lot_id: &str) {
    // fsectl writes it where asked; its text is the same.
    let copy = d.join("duplicata.pdf");
    let out = Command::new(common::bin("fsectl"))
        .arg("--socket")
        .arg(d.join("fsed.sock"))
        .args(["--json", "fse", "duplicate", &id.to_string(), "--out"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json!(hex::encode(Sha256::digest(std::fs::read(&copy).unwrap()))),
        answer["sha256"]
    );
    let copied = pdf_text(&copy);
    assert!(line_with(&copied, "Lot", lot_id), "{copied}");
    assert!(line_with(&copied, "NIR", "185057800608491"), "{copied}");
}
