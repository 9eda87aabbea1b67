//! Store tests on real SQLite files in temporary directories.

use std::path::{Path, PathBuf};

use fse_formats::ack::{Arl, ArlStatus, Rejection};

use super::*;

mod acks;
mod attachments;
mod lots;
mod migrations;
mod open;
mod participation;
mod payments;
mod retention;
mod rights;
mod sheets;
mod stats;
mod status;

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("q.db")
}

fn open(dir: &tempfile::TempDir) -> Queue {
    Queue::open(&db(dir)).unwrap()
}

fn new_sheet(pid: &str, number: u64, dest: &str, key: Option<&str>) -> NewSheet {
    NewSheet {
        practitioner_id: pid.into(),
        number,
        destination: dest.into(),
        idempotency_key: key.map(str::to_string),
        der: fse_formats::fse::CareSheet::sample(number)
            .to_der()
            .unwrap(),
        created_at: t("20261122100000Z"),
        ..Default::default()
    }
}

/// A sheet's or a lot's own time.
fn t(text: &str) -> CompactTime {
    text.parse().unwrap()
}

/// A row time stamp.
fn st(text: &str) -> Stamp {
    text.parse().unwrap()
}

/// A practitioner.
fn p(id: &str) -> PractitionerId {
    PractitionerId::new(id)
}

/// A lot id.
fn l(id: &str) -> LotId {
    LotId::new(id)
}

/// One date's participation of a new sheet: `acts` participations, `cents` withheld.
fn w(date: &str, acts: u32, cents: u64) -> Withheld {
    Withheld {
        care_date: date.into(),
        acts,
        cents,
    }
}

/// A line of a beneficiary's history.
fn rec(date: &str, professional: Option<&str>, acts: Option<u32>, cents: u64) -> PfRecord {
    PfRecord {
        care_date: date.into(),
        professional: professional.map(str::to_string),
        acts,
        cents,
    }
}

/// Allocates a number and inserts a new sheet.
fn add(q: &mut Queue, pid: &str, dest: &str) -> SheetRow {
    let number = q.allocate_sheet_number(&p(pid)).unwrap();
    match q.insert_sheet(&new_sheet(pid, number, dest, None)).unwrap() {
        Inserted::New(r) => r,
        Inserted::Existing(r) => panic!("unexpected existing sheet {r:?}"),
    }
}

fn arl(lot: &str, status: ArlStatus, rejections: Vec<Rejection>) -> Arl {
    Arl {
        lot_id: lot.into(),
        merkle_root: hex::encode([0u8; 32]),
        status,
        insurer: "011751234".into(),
        received_at: "20261122120000Z".into(),
        rejections,
    }
}

fn rejection(sheet_number: Option<u64>, code: &str) -> Rejection {
    Rejection {
        sheet_number,
        code: code.into(),
        reason: format!("{code} wrong"),
    }
}

fn sheet(q: &Queue, id: impl Into<SheetId>) -> SheetRow {
    q.get_sheet(id.into()).unwrap().unwrap()
}

fn lot(q: &Queue, id: &str) -> LotRow {
    q.get_lot(&l(id)).unwrap().unwrap()
}

fn kinds(q: &Queue) -> Vec<String> {
    q.events_since(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Everything the store shows, to compare before and after.
#[derive(Debug, PartialEq)]
struct Snapshot {
    sheets: Vec<SheetRow>,
    lots: Vec<LotRow>,
    events: Vec<EventRow>,
    stats: Stats,
    acks: Vec<Option<AckRow>>,
}

fn snapshot(q: &Queue) -> Snapshot {
    let lots = q.list_lots(1000).unwrap();
    Snapshot {
        sheets: q.list_sheets(None, 1000, SheetId(0)).unwrap(),
        acks: lots.iter().map(|l| q.get_ack(&l.id).unwrap()).collect(),
        lots,
        events: q.events_since(0, 1000).unwrap(),
        stats: q.stats().unwrap(),
    }
}

/// One lot of `n` sheets for practitioner 8A, signed; returns the lot id and sheets.
fn signed_lot(q: &mut Queue, n: usize) -> (LotId, Vec<SheetRow>) {
    let sheets: Vec<SheetRow> = (0..n).map(|_| add(q, "8A", "D")).collect();
    let lots = q.close_lots(None, 100, t("20261122110000Z")).unwrap();
    assert_eq!(lots.len(), 1);
    q.mark_lot_signed(&lots[0].id, b"signed lot").unwrap();
    (lots[0].id.clone(), sheets)
}
