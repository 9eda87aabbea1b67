//! The paper duplicate: its PDF (text, encoding, pages, same bytes each time) and its writing
//! (file, mode, event, failures kept for the doctor and made up for at the next look).

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use fse_formats::fse::CareSheet;
use fse_queue::NewSheet;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::*;
use crate::events::{Received, Selection};

/// A degraded-mode sheet of Dr Hélène LŒUVRE for Zoé ŠIMEK: one G (30 €) at 70 % in the care
/// path (the act's AMO share 30 × 70 % = 21,00 €), less the 2 € participation: the sheet's AMO
/// share 21 − 2 = 19,00 €; the patient bears 30 − 19 = 11,00 € and pays it all (no tiers
/// payant).
fn sheet_json(acts: usize) -> Value {
    let act = json!({"code": "G", "coefficient": 100, "quantity": 1, "date": "20261207",
        "base_cents": 3000, "excess_cents": 0, "rate": 70, "amo_cents": 2100, "pf_cents": 200});
    json!({
        "number": 42,
        "created_at": "20261207101502Z",
        "practitioner": {"national_id": "810000000009", "surname": "LŒUVRE", "given_name": "Hélène",
            "profession": "medecin", "specialty": "01", "billing_number": "751234567",
            "sector": 1, "cps_serial": "CPS-0001"},
        "replaced": null,
        "beneficiary": {"nir": "285057800608436", "surname": "ŠIMEK", "given_name": "Zoé",
            "birth_date": "19850512", "rank": 1, "organism": "017510001"},
        "acts": vec![act; acts],
        "care_path": "treating",
        "cover": {"kind": "maladie", "ald": false, "css": false},
        "tiers_payant": {"amo": false, "amc": false},
        "amounts": {"total_cents": 3000, "base_cents": 3000, "excess_cents": 0, "amo_cents": 1900,
            "pf_cents": 200, "amc_cents": 0, "patient_cents": 1100, "due_cents": 3000},
        "mode": "degraded",
        "degraded_reason": "carte oubliée",
        "deadline": "20261210",
        "tables_version": "2026-11",
        "presence": null
    })
}

fn sheet(acts: usize) -> CareSheet {
    serde_json::from_value(sheet_json(acts)).unwrap()
}

/// Whether `pdf` shows `text` as one piece (one cell): a literal string when its WinAnsi bytes
/// are ASCII (its parentheses escaped when they do not pair), else a hex string.
fn shows(pdf: &[u8], text: &str) -> bool {
    let bytes = text::win_ansi(text);
    let needles = if bytes.is_ascii() {
        let escaped = text.replace('(', "\\(").replace(')', "\\)");
        vec![format!("({text})"), format!("({escaped})")]
    } else {
        vec![format!("<{}>", hex::encode_upper(&bytes))]
    };
    needles
        .iter()
        .any(|n| pdf.windows(n.len()).any(|w| w == n.as_bytes()))
}

/// How many pages `pdf` has (`/Type /Page` objects, not the `/Pages` tree).
fn pages(pdf: &[u8]) -> usize {
    let needle = b"/Type /Page";
    pdf.windows(needle.len() + 1)
        .filter(|w| &w[..needle.len()] == needle && w[needle.len()] != b's')
        .count()
}

#[test]
fn the_duplicate_shows_the_sheet_its_lot_and_its_amounts_the_same_each_time() {
    let s = sheet(1);
    let d = Duplicate {
        sheet: &s,
        lot_id: None,
        reason: "mode dégradé",
    };
    let pdf = render(&d);
    assert!(pdf.starts_with(b"%PDF-1."), "a PDF");
    assert_eq!(render(&d), pdf, "the same bytes each time");
    assert_eq!(pages(&pdf), 1);
    for text in [
        "Feuille de soins — duplicata",
        "Feuille n° : 42",
        "Lot : hors lot",
        "Créée le : 07/12/2026 10:15:02 UTC",
        "Mode : dégradé (sans carte Vitale)",
        "Motif du mode dégradé : carte oubliée",
        "Date limite d'envoi : 10/12/2026",
        "Motif du duplicata : mode dégradé",
        "Nom : Hélène LŒUVRE",
        "Identifiant national : 810000000009",
        "N° de facturation : 751234567",
        "Nom : Zoé ŠIMEK",
        "NIR : 285057800608436",
        "Né(e) le : 12/05/1985",
        "Organisme (AMO) : 017510001",
        // The act: G, 30 € base at 70 % = 21 € AMO, 2 € participation; the sheet's AMO share
        // 21 − 2 = 19 €.
        "G",
        "30,00 €",
        "70 %",
        "21,00 €",
        "2,00 €",
        "19,00 €",
        "Parcours de soins : médecin traitant",
        "Couverture : maladie",
        "Droits : saisis (attestation papier)",
        // Patient's share 30 − 19 = 11 €.
        "11,00 €",
        "Tiers payant : AMO non, AMC non",
    ] {
        assert!(shows(&pdf, text), "{text:?} not shown");
    }
    // In a lot, the lot is named, and the duplicate differs.
    let in_lot = render(&Duplicate {
        lot_id: Some("810000000009-00000007"),
        ..d
    });
    assert!(shows(&in_lot, "Lot : 810000000009-00000007"));
    assert!(!shows(&in_lot, "Lot : hors lot"));
}

#[test]
fn the_rights_origin_and_the_app_mode_are_shown() {
    // A sheet vouched for by the Vitale app, priced on the card's rights after an online
    // lookup failed (a version 3 sheet).
    let mut json = sheet_json(1);
    json["mode"] = json!("app");
    json["degraded_reason"] = Value::Null;
    json["app_presence"] = json!({"token": "3000"});
    json["rights"] = json!({"source": "card", "read_at": "20261207101000Z",
        "answer_digest": null, "fallback": "service injoignable"});
    let s: CareSheet = serde_json::from_value(json).unwrap();
    let pdf = render(&Duplicate {
        sheet: &s,
        lot_id: None,
        reason: "x",
    });
    assert!(shows(&pdf, "Mode : application carte Vitale"));
    // 117 characters: cut at the last space within 95 (after "impossible", the 94th).
    assert!(shows(
        &pdf,
        "Droits : lus sur la carte Vitale, le 07/12/2026 10:10:00 UTC (consultation en ligne \
         impossible"
    ));
    assert!(shows(&pdf, ": service injoignable)"));
}

#[test]
fn accented_names_are_winansi_in_a_base_font() {
    let s = sheet(1);
    let pdf = render(&Duplicate {
        sheet: &s,
        lot_id: None,
        reason: "x",
    });
    // Helvetica and its bold, WinAnsi-encoded, nothing embedded.
    for needle in [
        &b"/BaseFont /Helvetica"[..],
        b"/BaseFont /Helvetica-Bold",
        b"/Encoding /WinAnsiEncoding",
    ] {
        assert!(pdf.windows(needle.len()).any(|w| w == needle), "{needle:?}");
    }
    assert!(
        !pdf.windows(9).any(|w| w == b"/FontFile"),
        "no font embedded"
    );
    // "Zoé ŠIMEK": é is E9, Š is 8A in WinAnsi.
    let name = b"Nom : Zo\xE9 \x8AIMEK";
    let hex = format!("<{}>", hex::encode_upper(name));
    assert!(pdf.windows(hex.len()).any(|w| w == hex.as_bytes()));
}

#[test]
fn many_acts_take_several_pages() {
    // 41 lines besides the acts (9 heading, 17 people, 3 table heading, 12 amounts); 56 lines
    // a page ((790 − 64) / 13 + 1): 15 acts fill one page, 16 need two, 120 need
    // ⌈161 / 56⌉ = 3.
    let one = |n| {
        let s = sheet(n);
        pages(&render(&Duplicate {
            sheet: &s,
            lot_id: None,
            reason: "x",
        }))
    };
    assert_eq!((one(15), one(16), one(120)), (1, 2, 3));
    let s = sheet(120);
    let pdf = render(&Duplicate {
        sheet: &s,
        lot_id: None,
        reason: "x",
    });
    assert!(shows(&pdf, "Feuille n° 42 — hors lot — page 3 / 3"));
    assert!(shows(&pdf, "Actes (120)"));
}

/// A queue in `dir` holding the degraded sheet (deadline 10/12/2026) as sheet 1.
async fn stored(dir: &tempfile::TempDir) -> Store {
    let store = Store::open(&dir.path().join("q.db")).unwrap();
    let der = sheet(1).to_der().unwrap();
    store
        .call(move |q| {
            q.insert_sheet(&NewSheet {
                practitioner_id: "810000000009".into(),
                number: 42,
                destination: "017510001".into(),
                der,
                created_at: "20261207101502Z".parse().unwrap(),
                ..Default::default()
            })
        })
        .await
        .unwrap();
    store
}

async fn next_event(sub: &mut crate::events::Subscription) -> Value {
    match sub.recv().await {
        Some(Received::Event(ev)) => ev,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_is_written_durably_and_announced() {
    let dir = tempfile::tempdir().unwrap();
    let store = stored(&dir).await;
    let bus = Bus::default();
    let mut sub = bus.subscribe(Selection::default());
    let paper = Paper::new(&PaperSection::default(), dir.path().join("paper"));
    let w = paper
        .duplicate(&store, &bus, 1, "asked", Trigger::Asked, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.path, dir.path().join("paper/810000000009-42.pdf"));
    let bytes = std::fs::read(&w.path).unwrap();
    assert_eq!(w.size, bytes.len() as u64);
    assert_eq!(w.sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!((w.id, w.number, w.lot_id.as_deref()), (1, 42, None));
    let mode = std::fs::metadata(&w.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    let ev = next_event(&mut sub).await;
    assert_eq!(ev["event"], "sheet.paper_duplicate");
    assert_eq!(
        (ev["sheet_id"].clone(), ev["trigger"].clone()),
        (json!(1), json!("asked"))
    );
    assert_eq!(ev["sha256"], json!(w.sha256));
    // Nothing else left in the folder (no temporary file).
    assert_eq!(
        std::fs::read_dir(dir.path().join("paper")).unwrap().count(),
        1
    );
    // An automatic one leaves the file there alone; an unknown sheet is not found.
    let again = paper
        .duplicate(&store, &bus, 1, "other", Trigger::Deadline, true)
        .await
        .unwrap();
    assert!(again.is_none());
    assert!(matches!(
        paper
            .duplicate(&store, &bus, 99, "x", Trigger::Asked, false)
            .await,
        Err(PaperError::NotFound(99))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deadline_day_brings_a_duplicate_and_a_failure_is_kept_then_made_up_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = stored(&dir).await;
    let bus = Bus::default();
    let folder = dir.path().join("paper");
    // The folder cannot be made: a file is in its place.
    std::fs::write(&folder, b"not a folder").unwrap();
    let section = PaperSection {
        days_before: 2,
        ..PaperSection::default()
    };
    let paper = Arc::new(Paper::new(&section, folder.clone()));
    let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
    // 07/12 + 2 days = 09/12, before the deadline 10/12: the degraded sheet's own duplicate
    // is tried, fails, is kept for the doctor.
    assert_eq!(scan::pass(&paper, &store, &bus, day(7)).await.unwrap(), 1);
    let failures = paper.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (failures[0].sheet_id, failures[0].trigger),
        (1, Trigger::Degraded)
    );
    let check = crate::doctor::paper(&paper);
    assert_eq!(check.status, crate::doctor::Status::Warning, "{check:?}");
    assert!(check.detail.contains("sheets 1"), "{check:?}");
    // The folder fixed, the next look makes it up: written, the failure gone.
    std::fs::remove_file(&folder).unwrap();
    let mut sub = bus.subscribe(Selection::default());
    assert_eq!(scan::pass(&paper, &store, &bus, day(8)).await.unwrap(), 1);
    assert!(paper.failures().is_empty());
    assert_eq!(
        crate::doctor::paper(&paper).status,
        crate::doctor::Status::Ok
    );
    assert_eq!(next_event(&mut sub).await["trigger"], "degraded");
    // Its file there, the deadline day brings nothing more.
    assert_eq!(scan::pass(&paper, &store, &bus, day(10)).await.unwrap(), 0);
    // Without it, 08/12 + 2 = 10/12 reaches the deadline: a deadline duplicate.
    std::fs::remove_file(folder.join("810000000009-42.pdf")).unwrap();
    assert_eq!(scan::pass(&paper, &store, &bus, day(8)).await.unwrap(), 1);
    let ev = next_event(&mut sub).await;
    assert_eq!(ev["trigger"], "deadline", "{ev}");
    assert!(folder.join("810000000009-42.pdf").is_file());
}
