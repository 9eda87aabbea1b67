//! Baseline figures for BENCHMARKS.md, each beside its physical limit:
//! raw SQLite commits (one row per transaction, then batched) against
//! `Queue::insert_sheet`; raw Ed25519 signatures and raw SHA-256 against the
//! lot build (salted Merkle tree, DER header, signature).
//! Run with `cargo bench -p fse_queue --bench baseline`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use fse_formats::fse::CareSheet;
use fse_formats::lot::{self, LotEntry, LotHeader, SignedLot};
use fse_formats::merkle;
use fse_queue::{NewSheet, PractitionerId, Queue};
use sha2::{Digest, Sha256};

fn rate(label: &str, n: u64, d: Duration, unit: &str) {
    println!(
        "{label:<58} {:>12.0} {unit}/s   ({n} in {:.2} s)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    );
}

fn sheet(n: u64) -> CareSheet {
    CareSheet::sample(n)
}

/// Rows (and sheets) committed one per transaction by the SQLite and queue runs.
const ONE_PER_COMMIT: u64 = 2000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let der = sheet(1).to_der().unwrap();
    println!("sheet DER: {} bytes", der.len());
    raw_sqlite(dir.path(), &der);
    queue_inserts(dir.path(), &der);
    let key = SigningKey::from_bytes(&[7; 32]);
    raw_crypto(&key, &der);
    lot_build(&key);
}

/// Raw SQLite: one INSERT per transaction, WAL + synchronous=FULL, then 100 per transaction.
fn raw_sqlite(dir: &Path, der: &[u8]) {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)").unwrap();
    let n = ONE_PER_COMMIT;
    let t = Instant::now();
    for _ in 0..n {
        conn.execute("INSERT INTO t (b) VALUES (?1)", [der])
            .unwrap();
    }
    rate(
        "raw SQLite, 1 row per commit (WAL, synchronous=FULL)",
        n,
        t.elapsed(),
        "rows",
    );
    let t = Instant::now();
    let n_batched = 100 * 100;
    for _ in 0..100 {
        conn.execute_batch("BEGIN").unwrap();
        for _ in 0..100 {
            conn.execute("INSERT INTO t (b) VALUES (?1)", [der])
                .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    rate(
        "raw SQLite, 100 rows per commit",
        n_batched,
        t.elapsed(),
        "rows",
    );
}

/// The queue: number allocation + insert, each its own durable transaction.
fn queue_inserts(dir: &Path, der: &[u8]) {
    let n = ONE_PER_COMMIT;
    let mut q = Queue::open(&dir.join("q.db")).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let number = q
            .allocate_sheet_number(&PractitionerId::new("810000000009"))
            .unwrap();
        q.insert_sheet(&NewSheet {
            practitioner_id: "810000000009".into(),
            number,
            destination: "017510001".into(),
            idempotency_key: None,
            der: der.to_vec(),
            created_at: "20261122101500Z".parse().unwrap(),
            ..Default::default()
        })
        .unwrap();
    }
    rate(
        "Queue: allocate number + insert sheet (2 commits), 1 client",
        n,
        t.elapsed(),
        "sheets",
    );
}

/// Raw Ed25519 and SHA-256.
fn raw_crypto(key: &SigningKey, der: &[u8]) {
    let n_sig: u64 = 20_000;
    let t = Instant::now();
    for i in 0..n_sig {
        std::hint::black_box(key.sign(&i.to_be_bytes()));
    }
    rate(
        "raw Ed25519 sign (ed25519-dalek)",
        n_sig,
        t.elapsed(),
        "signatures",
    );
    let n_hash = 500_000;
    let t = Instant::now();
    for _ in 0..n_hash {
        std::hint::black_box(Sha256::digest(der));
    }
    rate(
        &format!("raw SHA-256 over one sheet ({} bytes)", der.len()),
        n_hash,
        t.elapsed(),
        "hashes",
    );
}

/// Lot build and sign, excluding card latency: salted leaves, Merkle root, DER header, one
/// signature, DER lot.
fn lot_build(key: &SigningKey) {
    let sheets: Vec<Vec<u8>> = (1..=1000).map(|i| sheet(i).to_der().unwrap()).collect();
    let rounds = 50;
    let t = Instant::now();
    for r in 0..rounds {
        let entries: Vec<LotEntry> = sheets
            .iter()
            .map(|s| LotEntry {
                salt: [r as u8; 16],
                sheet: s.clone(),
            })
            .collect();
        let header = LotHeader {
            lot_id: format!("810000000009-{r:08}"),
            number: r + 1,
            practitioner_id: "810000000009".into(),
            destination: "017510001".into(),
            sheet_count: entries.len() as u64,
            merkle_root: merkle::root(&lot::leaves(&entries)),
            closed_at: "20261122120000Z".into(),
            cps_serial: "CPS-0001".into(),
            signer_key: key.verifying_key().to_bytes(),
            attachments: Vec::new(),
        };
        let signature = key.sign(&header.to_der().unwrap()).to_bytes();
        std::hint::black_box(
            SignedLot {
                header,
                signature,
                signer_certificate: None,
                entries,
            }
            .to_der()
            .unwrap(),
        );
    }
    rate(
        "lot build + sign, 1000-sheet lots, no card latency",
        rounds * 1000,
        t.elapsed(),
        "sheets",
    );
}
