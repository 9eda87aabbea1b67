//! Durable accepts per second through `fsed::store::Store` — a sheet number
//! from the reserved block, then the sheet stored with group commit — with
//! 1, 8 and 64 concurrent clients, beside the raw SQLite commit rates of the
//! same disk in the same run (WAL, synchronous=FULL: one row per commit, and
//! 100 rows per commit). Run with `cargo bench -p fsed --bench accepts`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use fse_formats::fse::CareSheet;
use fse_queue::{NewSheet, PractitionerId};
use fsed::store::Store;

fn rate(label: &str, n: u64, d: Duration) -> f64 {
    let r = n as f64 / d.as_secs_f64();
    println!(
        "{label:<60} {r:>10.0} /s   ({n} in {:.2} s)",
        d.as_secs_f64()
    );
    r
}

fn raw(dir: &std::path::Path, per_commit: u64, n: u64, der: &[u8]) -> f64 {
    let conn = rusqlite::Connection::open(dir.join(format!("raw-{per_commit}.db"))).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
        .unwrap();
    let t = Instant::now();
    for _ in 0..n / per_commit {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        for _ in 0..per_commit {
            conn.execute("INSERT INTO t (b) VALUES (?1)", [der])
                .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    rate(
        &format!("limit: raw SQLite, {per_commit} row(s) per commit"),
        n,
        t.elapsed(),
    )
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let der = CareSheet::sample(1).to_der().unwrap();
    let one = raw(dir.path(), 1, 3000, &der);
    raw(dir.path(), 100, 100_000, &der);
    // The queue alone: batches of 64 in one transaction each, one thread.
    let mut q = fse_queue::Queue::open(&dir.path().join("direct.db")).unwrap();
    let batches = 400u64;
    let t = Instant::now();
    for b in 0..batches {
        let first = q
            .reserve_sheet_numbers(&PractitionerId::new("810000000009"), 64)
            .unwrap();
        let batch: Vec<NewSheet> = (0..64)
            .map(|i| NewSheet {
                practitioner_id: "810000000009".into(),
                number: first + i,
                destination: "017510001".into(),
                idempotency_key: Some(format!("d{b}-{i}")),
                // A keyed sheet is stored with its request's hash (schema 14).
                request_hash: Some([7; 32]),
                der: der.clone(),
                created_at: "20261116093000Z".parse().unwrap(),
                ..Default::default()
            })
            .collect();
        q.insert_sheets(&batch).unwrap();
    }
    rate(
        "Queue::insert_sheets alone, 64 per commit, one thread",
        batches * 64,
        t.elapsed(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for clients in [1u64, 8, 64] {
        let path = dir.path().join(format!("fsed-{clients}.db"));
        let store = Store::open(&path).unwrap();
        let per_client = if clients == 1 { 3000 } else { 40_000 / clients };
        let t = Instant::now();
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for c in 0..clients {
                let store = store.clone();
                let der = der.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..per_client {
                        let pid = PractitionerId::new("810000000009");
                        let number = store.next_sheet_number(&pid).await.unwrap();
                        store
                            .insert_sheet(NewSheet {
                                practitioner_id: pid,
                                number,
                                destination: "017510001".into(),
                                idempotency_key: Some(format!("c{c}-{i}")),
                                request_hash: Some([7; 32]),
                                der: der.clone(),
                                created_at: "20261116093000Z".parse().unwrap(),
                                ..Default::default()
                            })
                            .await
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let r = rate(
            &format!("Store: number + durable insert, {clients} concurrent client(s)"),
            clients * per_client,
            t.elapsed(),
        );
        println!(
            "{:<60} {:>10.1}×",
            "  against raw one-row-per-commit",
            r / one
        );
    }
}
