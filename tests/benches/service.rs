//! The service as practice software sees it, on the real parts (fsed with its embedded
//! virtual reader ⇄ `fse-sim cards` with card latency off, SQLite, the spool transport):
//! 1. `fse.create` latency p50/p99 with 1 client, then with 64 (`fse-sim practice`);
//! 2. the idle daemon: resident memory (VmRSS, VmHWM) and CPU over 30 s with nothing to do,
//!    after those sheets were made;
//! 3. beside them, in the same run, the floors of that latency: one durable SQLite commit of
//!    one row (WAL, synchronous=FULL, the queue's settings) and the round trip of the
//!    cheapest request (`system.version`) over the socket.
//!
//! Needs the release binaries (`cargo build --release --workspace --bins`). Run:
//! `cargo bench -p fsed_tests --bench service`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

/// p50 and p99 of `samples`, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

/// Latency of one durable commit of one row, as the queue commits (WAL, synchronous=FULL).
fn raw_commit_latency(dir: &std::path::Path, n: usize) -> (f64, f64) {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
        .unwrap();
    let body = vec![7u8; 2048];
    let samples = (0..n)
        .map(|_| {
            let t = Instant::now();
            conn.execute("INSERT INTO t (body) VALUES (?1)", [&body])
                .unwrap();
            t.elapsed()
        })
        .collect();
    percentiles(samples)
}

/// Latency of `system.version` over fsed's socket, one client.
fn version_round_trip(socket: &std::path::Path, n: usize) -> (f64, f64) {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    let samples = (0..n)
        .map(|i| {
            let t = Instant::now();
            writeln!(
                writer,
                r#"{{"jsonrpc":"2.0","id":{i},"method":"system.version"}}"#
            )
            .unwrap();
            line.clear();
            reader.read_line(&mut line).unwrap();
            let took = t.elapsed();
            assert!(line.contains("\"result\""), "{line}");
            took
        })
        .collect();
    percentiles(samples)
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (fsed, _cards, socket) = common::start_virtual(dir.path(), &["--transport", "spool"]);
    let pid = fsed.0.id();
    let (rss_start, _) = memory(pid);

    let (c50, c99) = raw_commit_latency(dir.path(), 2000);
    println!("floor: raw SQLite commit of one row (WAL, synchronous=FULL): p50 {c50:.3} ms, p99 {c99:.3} ms");
    let (v50, v99) = version_round_trip(&socket, 5000);
    println!("floor: system.version round trip, 1 client: p50 {v50:.3} ms, p99 {v99:.3} ms");

    for (clients, sheets) in [("1", "5000"), ("64", "30000")] {
        let s = common::practice(
            &socket,
            &[
                "--practices",
                clients,
                "--sheets",
                sheets,
                "--degraded-percent",
                "0",
            ],
        );
        let l = &s["latency_ms"];
        println!(
            "fse.create, {clients:>2} client(s), {sheets} sheets: {:.0} sheets/s; latency ms p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}",
            s["sheets_per_second"].as_f64().unwrap(),
            l["p50"].as_f64().unwrap(),
            l["p90"].as_f64().unwrap(),
            l["p99"].as_f64().unwrap(),
            l["max"].as_f64().unwrap(),
        );
        assert_eq!(s["created"], s["requested"], "{s}");
    }

    // Idle: the lots of the last sheets are written, then nothing happens for 30 s.
    std::thread::sleep(Duration::from_secs(5));
    let (ticks, at) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(30));
    let used = (cpu_ticks(pid) - ticks) as f64 / 100.0; // USER_HZ is 100 on Linux
    let (rss, hwm) = memory(pid);
    println!(
        "idle daemon: CPU {:.3} % of one core over {:.0} s; RSS {} KiB (at start {} KiB, peak {} KiB)",
        used / at.elapsed().as_secs_f64() * 100.0,
        at.elapsed().as_secs_f64(),
        rss,
        rss_start,
        hwm
    );
}
