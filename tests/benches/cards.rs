//! Card timings for BENCHMARKS.md: reading the CPS and signing, in process
//! (the simulator's engine alone) and through the real pcscd + vpcd; and the
//! CPU an idle fsed uses with both cards inserted, over 60 s.
//! Needs pcscd with the vpcd driver running and the workspace's binaries
//! built (`tests/run` does both): `cargo bench -p fsed_tests --bench cards`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, connect, Kill};
use fse_formats::cards::{self, Pin};
use fse_formats::channel::CardChannel;
use fse_simulator::card::InProcess;
use fse_simulator::profiles;

fn time<C: CardChannel>(label: &str, ch: &mut C, n: u32) {
    let pin = Pin::new(profiles::DEFAULT_PIN).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        cards::read_cps(ch).unwrap();
    }
    let read = t.elapsed() / n;
    cards::verify_pin(ch, &pin).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        cards::select_aid(ch, cards::AID_CPS).unwrap();
        cards::cps_sign(ch, &[7u8; 200]).unwrap();
    }
    let sign = t.elapsed() / n;
    println!(
        "{label:<44} read CPS {:>9.3} ms   select + sign {:>9.3} ms",
        read.as_secs_f64() * 1e3,
        sign.as_secs_f64() * 1e3
    );
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn main() {
    let mut cps = profiles::default_cps();
    time(
        "in process (simulator engine, no latency)",
        &mut InProcess(&mut cps),
        200,
    );

    let cards_proc = Kill(
        Command::new(bin("fse-sim"))
            .args(["cards", "--latency-ms", "0", "--signature-latency-ms", "0"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    time(
        "through pcscd + vpcd (simulator, no latency)",
        &mut connect("Virtual PCD 00 00"),
        50,
    );

    let dir = std::env::temp_dir().join(format!("fsed-bench-{}", std::process::id()));
    let fsed = Kill(
        Command::new(bin("fsed"))
            .args([
                "--config",
                "/dev/null",
                "--cards",
                "pcsc",
                "--transport",
                "spool",
                "--state-dir",
            ])
            .arg(&dir)
            .arg("--socket")
            .arg(dir.join("fsed.sock"))
            .env("FSED_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(5));
    let pid = fsed.0.id();
    let hz = 100.0; // USER_HZ on Linux
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(60));
    let (secs, ticks) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid) - c0);
    println!("idle fsed with both cards inserted: {ticks} CPU ticks in {secs:.0} s = {:.3} % of one core", ticks as f64 / hz / secs * 100.0);
    drop(fsed);
    drop(cards_proc);
    let _ = std::fs::remove_dir_all(dir);
}
