//! What the benchmarks over pcscd share: a PC/SC card channel, child
//! processes killed on drop, the workspace's binaries.

#![allow(dead_code)]

use std::ffi::CString;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use fse_formats::channel::{CardChannel, ChannelError};

/// A card reached through pcscd.
pub struct Pcsc(pub pcsc::Card);

impl CardChannel for Pcsc {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        self.0
            .transmit(command, &mut buf)
            .map(<[u8]>::to_vec)
            .map_err(|e| ChannelError::Reader(e.to_string()))
    }
}

/// A child process killed when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A built binary of the workspace (release or debug); `FSED_BENCH_BIN_DIR` names the folder
/// to take them from (e.g. `target/release` for a bench driver built in debug).
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("FSED_BENCH_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    // Benches build in target/release; the binaries may be in either profile.
    for p in [
        dir.join(name),
        dir.parent().unwrap().join("debug").join(name),
    ] {
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not built: cargo build --workspace --bins");
}

/// Connects to the card in `reader` through pcscd, waiting for it at most 20 s.
pub fn connect(reader: &str) -> Pcsc {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).expect("pcscd running");
    let name = CString::new(reader).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match ctx.connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY) {
            Ok(c) => return Pcsc(c),
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("no card in {reader:?}: {e}"),
        }
    }
}

/// fsed on its embedded virtual reader (slots on Unix sockets in `dir`: the simulated cards'
/// link costs no TCP stack, which a real reader's USB link does not either) with `fse-sim
/// cards` at full speed (no card latency), the test PKI as its trust directory, lots of 100
/// sheets or 1 s, quiet logs, and `fsed_args` after those; both started in `dir`. Returns fsed,
/// the cards and fsed's socket, once the socket is there and the cards had time to be read.
pub fn start_virtual(dir: &std::path::Path, fsed_args: &[&str]) -> (Kill, Kill, PathBuf) {
    start_virtual_env(dir, fsed_args, &[])
}

/// [`start_virtual`] with these environment variables set for fsed (e.g. a configuration key
/// that has no flag).
pub fn start_virtual_env(
    dir: &std::path::Path,
    fsed_args: &[&str],
    env: &[(&str, &str)],
) -> (Kill, Kill, PathBuf) {
    use std::process::{Command, Stdio};
    let trust = dir.join("trust");
    assert!(Command::new(bin("fse-sim"))
        .args(["pki", "--out", trust.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let socket = dir.join("fsed.sock");
    let (cps_path, vitale_path) = (dir.join("cps.vpcd"), dir.join("vitale.vpcd"));
    let (cps, vitale) = (
        format!("unix:{}", cps_path.display()),
        format!("unix:{}", vitale_path.display()),
    );
    let fsed = Kill(
        Command::new(bin("fsed"))
            .args([
                "--config",
                "/dev/null",
                "--state-dir",
                dir.to_str().unwrap(),
                "--socket",
                socket.to_str().unwrap(),
                "--cards",
                "virtual",
                "--virtual-slot",
                &cps,
                "--virtual-slot",
                &vitale,
                "--trust-dir",
                trust.to_str().unwrap(),
                "--lot-max-sheets",
                "100",
                "--lot-max-age-secs",
                "1",
            ])
            .args(fsed_args)
            .envs(env.iter().copied())
            .env("FSED_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cards = Kill(
        Command::new(bin("fse-sim"))
            .args([
                "cards",
                "--control",
                dir.join("control.sock").to_str().unwrap(),
                "--latency-ms",
                "0",
                "--signature-latency-ms",
                "0",
                "--cps-socket",
                cps_path.to_str().unwrap(),
                "--vitale-socket",
                vitale_path.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let end = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3)); // the cards read
    (fsed, cards, socket)
}

/// Runs `fse-sim practice` on fsed's `socket` (PIN 1234, quiet) with `args`, prints its
/// human summary and returns its JSON summary.
pub fn practice(socket: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(bin("fse-sim"))
        .arg("practice")
        .args([
            "--socket",
            socket.to_str().unwrap(),
            "--pin",
            "1234",
            "--quiet",
        ])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!(
        "{}",
        stdout
            .lines()
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}
