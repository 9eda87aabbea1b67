//! fsed and the simulated cards over the real pcscd when pcscd itself comes and goes: pcscd
//! killed and started again under a running fsed (the cards come back by themselves, the PIN
//! is asked again, then a lot is signed), fsed started before pcscd (it starts, the doctor says
//! what is missing, the cards come once pcscd does), and APDUs at the edges of ISO 7816-4 from
//! independent PC/SC clients (`scriptor`, and the `pcsc` crate for what scriptor refuses to
//! send): wrong Le on a signature, READ BINARY without Le, 1-byte APDUs.
//!
//! These tests stop the machine's pcscd: run them under `/tmp/fsed-itest.lock` like every
//! test on the shared pcscd. A guard starts pcscd again when a test ends, even when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{wait_for, Proc, Rpc};
use serde_json::{json, Value};

const CPS_READER: &str = "Virtual PCD 00 00";
const LOG: &str = "/tmp/fsed-pcscd.log";

/// Starts pcscd in the background, as tests/run does, with none of this process's descriptors
/// but its standard ones: a pcscd outliving the test must not hold what the test was given (a
/// lock taken around the run, the pipe a harness reads to its end).
fn spawn_pcscd() -> std::io::Result<std::process::ExitStatus> {
    let script = format!(
        "for fd in /proc/$$/fd/*; do fd=${{fd##*/}}; [ \"$fd\" -gt 2 ] && eval \"exec $fd>&-\"; done 2>/dev/null; \
         nohup setsid pcscd --foreground >>{LOG} 2>&1 </dev/null &"
    );
    Command::new("bash").args(["-c", &script]).status()
}

fn pcscd_pid() -> Option<u32> {
    let out = Command::new("pgrep").args(["-x", "pcscd"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
}

/// Whether a new PC/SC context sees the vpcd readers.
fn pcscd_lists_vpcd() -> bool {
    pcsc::Context::establish(pcsc::Scope::User)
        .ok()
        .and_then(|ctx| ctx.list_readers_owned().ok())
        .is_some_and(|r| r.iter().any(|n| n.to_string_lossy() == CPS_READER))
}

/// Stops pcscd for a test and starts it again, at the latest when dropped.
struct Pcscd;

impl Pcscd {
    /// Stops the running pcscd (SIGTERM) and waits until it is gone.
    fn kill(&self) {
        let pid = pcscd_pid().expect("pcscd runs (tests/run starts it)");
        assert!(Command::new("kill")
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success());
        wait_for("pcscd to stop", Duration::from_secs(20), || {
            (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
        });
    }

    /// Starts pcscd as tests/run does (foreground, in the background, logging to /tmp) and
    /// waits until it lists the vpcd readers.
    fn start(&self) {
        if pcscd_pid().is_none() {
            let _ = std::fs::create_dir_all("/run/pcscd");
            assert!(spawn_pcscd().unwrap().success());
        }
        wait_for(
            "pcscd to list the vpcd readers",
            Duration::from_secs(20),
            || pcscd_lists_vpcd().then_some(()),
        );
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        if pcscd_pid().is_none() {
            let _ = std::fs::create_dir_all("/run/pcscd");
            let _ = spawn_pcscd();
            // Give it its readers back before the next test looks (not asserted: we may be
            // unwinding already).
            let end = Instant::now() + Duration::from_secs(20);
            while !pcscd_lists_vpcd() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn kinds(rpc: &mut Rpc) -> Vec<String> {
    let list = rpc.ok("cards.list", json!({}));
    let mut k: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap().to_string())
        .collect();
    k.sort();
    k
}

fn error_name(reply: &Value) -> &str {
    reply["error"]["data"]["name"].as_str().unwrap_or("")
}

fn doctor_check(rpc: &mut Rpc, name: &str) -> Value {
    let report = rpc.ok("system.doctor", json!({}));
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[test]
fn fsed_finds_its_cards_again_after_pcscd_restarts_and_asks_for_the_pin_again() {
    let _turn = common::shared_services();
    let pcscd = Pcscd;
    pcscd.start();
    let mut cards = Proc::start("fse-sim", &["cards", "--latency-ms", "0"]);
    cards.wait_line("cards ready", Duration::from_secs(20));
    let dir = tempfile::tempdir().unwrap();
    let (mut fsed, mut rpc) = common::start_fsed(dir.path(), &["--transport", "spool"]);
    wait_for("both cards", Duration::from_secs(30), || {
        (kinds(&mut rpc) == ["cps", "vitale"]).then_some(())
    });
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let sheet = rpc.ok("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(sheet["state"], "accepted");
    let mut watcher = Rpc::connect(&dir.path().join("fsed.sock"), Duration::from_secs(5));
    watcher.ok("events.subscribe", json!({}));

    pcscd.kill();
    let lost = watcher.wait_event("reader.lost");
    assert!(
        lost["reader"].as_str().unwrap().starts_with("Virtual PCD"),
        "{lost}"
    );
    assert!(kinds(&mut rpc).is_empty(), "no card seen without pcscd");
    let check = doctor_check(&mut rpc, "pcscd");
    assert_eq!(check["status"], "failure", "{check}");
    let cards_check = doctor_check(&mut rpc, "cards");
    assert!(
        !cards_check["fix"].as_str().unwrap_or("").contains("insert"),
        "the cards are in: {cards_check}"
    );

    let restarted = Instant::now();
    pcscd.start();
    wait_for("the cards back in fsed", Duration::from_secs(10), || {
        (kinds(&mut rpc) == ["cps", "vitale"]).then_some(())
    });
    let took = restarted.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(watcher.wait_event("reader.found")["event"], "reader.found");
    assert_eq!(doctor_check(&mut rpc, "pcscd")["status"], "ok");

    // A new card session: the PIN verified before is not replayed.
    let list = rpc.ok("cards.list", json!({}));
    let cps = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "cps")
        .unwrap();
    assert_eq!(cps["pin_verified"], false, "{cps}");
    let r = rpc.call("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(error_name(&r), "PIN_REQUIRED", "{r}");
    assert_eq!(
        rpc.ok("cards.pin_status", json!({}))["tries_left"],
        json!(3),
        "nothing counted as a wrong PIN"
    );

    // The PIN again, then the sheet made before the restart goes into a lot the CPS signs.
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    rpc.ok("lots.close", json!({}));
    let signed = watcher.wait_event("lot.signed");
    let lot = rpc.ok("lots.get", json!({"lot_id": signed["lot_id"]}));
    assert!(
        lot.to_string().contains(&sheet["number"].to_string()),
        "{lot}"
    );
    eprintln!("cards back in fsed {took:?} after pcscd started again");

    assert!(fsed.terminate().success());
    drop(cards);
}

#[test]
fn fsed_starts_before_pcscd_and_finds_the_cards_when_it_comes() {
    let _turn = common::shared_services();
    let pcscd = Pcscd;
    pcscd.start();
    pcscd.kill();
    let mut cards = Proc::start("fse-sim", &["cards", "--latency-ms", "0"]);
    cards.wait_line("cards ready", Duration::from_secs(20));
    let dir = tempfile::tempdir().unwrap();
    let (mut fsed, mut rpc) = common::start_fsed(dir.path(), &["--transport", "spool"]);
    assert!(kinds(&mut rpc).is_empty());
    let check = doctor_check(&mut rpc, "pcscd");
    assert_eq!(check["status"], "failure", "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("not reachable"),
        "{check}"
    );
    assert!(check["fix"].as_str().unwrap().contains("pcscd"), "{check}");

    pcscd.start();
    wait_for(
        "the cards once pcscd is there",
        Duration::from_secs(10),
        || (kinds(&mut rpc) == ["cps", "vitale"]).then_some(()),
    );
    assert_eq!(doctor_check(&mut rpc, "pcscd")["status"], "ok");
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let sheet = rpc.ok("fse.create", json!({"act": {"code": "G"}}));
    assert_eq!(sheet["state"], "accepted");
    assert!(fsed.terminate().success());
    drop(cards);
}

fn scriptor(apdus: &str) -> String {
    let mut child = Command::new("scriptor")
        .args(["-r", CPS_READER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scriptor (pcsc-tools) is installed by tests/run");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(apdus.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends each APDU to the CPS through a PC/SC context of its own, on a thread, so that a
/// reader that never answers fails the test instead of hanging it.
fn transmit_all(apdus: &[&[u8]]) -> Vec<Vec<u8>> {
    let n = apdus.len();
    let apdus: Vec<Vec<u8>> = apdus.iter().map(|a| a.to_vec()).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
        let reader = std::ffi::CString::new(CPS_READER).unwrap();
        let card = ctx
            .connect(&reader, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
            .unwrap();
        for apdu in apdus {
            let mut buf = [0u8; 300];
            let answer = card.transmit(&apdu, &mut buf).map(<[u8]>::to_vec);
            let _ = tx.send((apdu, answer));
        }
    });
    let mut answers = Vec::new();
    for _ in 0..n {
        // A 1-byte APDU is answered after fse_formats::vpcd::CONTROL_SILENCE (2 s): 10 s is
        // a reader that no longer answers.
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok((_, Ok(answer))) => answers.push(answer),
            Ok((apdu, Err(e))) => panic!("{}: {e}", hex::encode_upper(apdu)),
            Err(_) => break,
        }
    }
    answers
}

#[test]
fn apdus_at_the_edges_of_iso_7816_get_iso_answers_and_never_wedge_the_reader() {
    let _turn = common::shared_services();
    let pcscd = Pcscd;
    pcscd.start();
    let mut cards = Proc::start("fse-sim", &["cards", "--latency-ms", "0"]);
    cards.wait_line("cards ready", Duration::from_secs(20));
    // SELECT the CPS application (AID E8 28 BD 08 0F 80 25 00 00 01 FF 00 10), its holder file
    // D100, then READ BINARY without Le (case 1, read as Le 00) and with Le 05; VERIFY 1234
    // (31 32 33 34 padded with FF); PSO with Le 10 (16 bytes asked of a 64-byte signature:
    // 6C40, 0x40 = 64), then with Le 40 (64 bytes and 9000).
    let out = wait_for("scriptor to reach the CPS", Duration::from_secs(20), || {
        let out = scriptor(
            "00 A4 04 0C 0D E8 28 BD 08 0F 80 25 00 00 01 FF 00 10\n\
             00 A4 02 0C 02 D1 00\n\
             00 B0 00 00\n\
             00 B0 00 00 05\n\
             00 20 00 81 08 31 32 33 34 FF FF FF FF\n\
             00 2A 9E 9A 03 6C 6F 74 10\n\
             00 2A 9E 9A 03 6C 6F 74 40\n",
        );
        out.contains("< 90 00").then_some(out)
    });
    let holder_hex: String = "MARTIN".bytes().map(|b| format!("{b:02X} ")).collect();
    let flat = out.replace('\n', "");
    let answers: Vec<&str> = flat
        .split("> ")
        .skip(1)
        .map(|s| s.split("< ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(answers.len(), 7, "{out}");
    assert!(
        answers[2].contains(holder_hex.trim()),
        "case 1 READ BINARY reads the file:\n{out}"
    );
    // Le 05: the first 5 bytes of the holder file (tag 80, length 01, 00; tag 81, length 08).
    assert!(answers[3].starts_with("80 01 00 81 08 90 00"), "{out}");
    assert!(
        answers[5].starts_with("6C 40"),
        "PSO with Le 10 must answer 6C40:\n{out}"
    );
    // 64 bytes as hex "XX " is 192 characters, then "90 00".
    let signature = answers[6];
    assert!(
        signature.len() >= 192 + 5 && signature[192..].starts_with("90 00"),
        "PSO with Le 40 gives the 64 bytes:\n{out}"
    );

    // 1-byte APDUs, which scriptor refuses to send: the vpcd driver frames them as control
    // messages; the card answers each 6700 and goes on. SELECT after them still answers 9000.
    let select: &[u8] = &[
        0x00, 0xA4, 0x04, 0x0C, 0x0D, 0xE8, 0x28, 0xBD, 0x08, 0x0F, 0x80, 0x25, 0x00, 0x00, 0x01,
        0xFF, 0x00, 0x10,
    ];
    let sent: Vec<&[u8]> = vec![&[0x00], &[0x04], &[0x01], &[0x02], &[0x05], select];
    let answers = transmit_all(&sent);
    assert_eq!(
        answers,
        vec![
            vec![0x67, 0x00],
            vec![0x67, 0x00],
            vec![0x67, 0x00],
            vec![0x67, 0x00],
            vec![0x67, 0x00],
            vec![0x90, 0x00],
        ],
        "answers to 00, 04, 01, 02, 05, SELECT (a missing answer: the reader wedged)"
    );
    // And the reader still answers a new client.
    let out = scriptor("00 A4 04 0C 0D E8 28 BD 08 0F 80 25 00 00 01 FF 00 10\n");
    assert!(out.contains("< 90 00"), "{out}");
    drop(cards);
}

#[test]
fn a_card_pulled_out_mid_pin_or_mid_signature_is_no_wrong_pin_and_the_pin_is_never_replayed() {
    let _turn = common::shared_services();
    let pcscd = Pcscd;
    pcscd.start();
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control.sock");
    // The card takes 3 s to check a PIN and 3 s to sign: time to pull it out while it works.
    let mut sim = Proc::start(
        "fse-sim",
        &[
            "cards",
            "--control",
            control.to_str().unwrap(),
            "--latency-ms",
            "0",
            "--pin-latency-ms",
            "3000",
            "--signature-latency-ms",
            "3000",
        ],
    );
    sim.wait_line("cards ready", Duration::from_secs(20));
    let (mut fsed, mut rpc) = common::start_fsed(dir.path(), &["--transport", "spool"]);
    wait_for("both cards", Duration::from_secs(30), || {
        (kinds(&mut rpc) == ["cps", "vitale"]).then_some(())
    });
    let socket = dir.path().join("fsed.sock");
    let mut watcher = Rpc::connect(&socket, Duration::from_secs(5));
    watcher.ok("events.subscribe", json!({}));

    // A wrong PIN on its way to the card when the card leaves: the card never checks it.
    let mut caller = Rpc::connect(&socket, Duration::from_secs(5));
    let verify =
        std::thread::spawn(move || caller.call("cards.verify_pin", json!({"pin": "0000"})));
    // Well within the card's 3 s on the PIN (its link is cut mid-command).
    std::thread::sleep(Duration::from_millis(1000));
    common::order(&control, &["remove", "--slot", "cps"]);
    let r = verify.join().unwrap();
    // Absent, not a wrong PIN nor a card fault: the card left.
    assert_eq!(error_name(&r), "CARD_ABSENT", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("removed"),
        "{r}"
    );
    assert!(r["error"]["data"].get("tries_left").is_none(), "{r}");
    let stats = common::order(&control, &["stats", "--slot", "cps"]);
    assert_eq!(
        stats["verifies"], 0,
        "the card never checked the PIN: {stats}"
    );

    // Back in: fsed presents no PIN by itself, the card still has its 3 tries.
    reinsert_cps(&control, &mut rpc);
    let st = rpc.ok("cards.pin_status", json!({}));
    assert_eq!(st["tries_left"], json!(3), "{st}");
    let stats = common::order(&control, &["stats", "--slot", "cps"]);
    assert_eq!(stats["verifies"], 0, "no PIN replayed: {stats}");

    // The right PIN, a sheet, a lot: the CPS pulled out while it signs.
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    rpc.ok("fse.create", json!({"act": {"code": "G"}}));
    rpc.ok("lots.close", json!({}));
    let lot = watcher.wait_event("lot.closed")["lot_id"].clone();
    // Well within the card's 3 s on the signature.
    std::thread::sleep(Duration::from_millis(1000));
    common::order(&control, &["remove", "--slot", "cps"]);
    let failed = watcher.wait_event("lot.sign_failed");
    assert_eq!(failed["lot_id"], lot, "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("removed") && !reason.to_lowercase().contains("wrong pin"),
        "{failed}"
    );
    let stats = common::order(&control, &["stats", "--slot", "cps"]);
    // One VERIFY (the right PIN), no signature finished.
    assert_eq!(
        (stats["verifies"].clone(), stats["signatures"].clone()),
        (json!(1), json!(0)),
        "{stats}"
    );

    reinsert_cps(&control, &mut rpc);
    let st = rpc.ok("cards.pin_status", json!({}));
    assert_eq!(st["tries_left"], json!(3), "{st}");
    let stats = common::order(&control, &["stats", "--slot", "cps"]);
    assert_eq!(
        stats["verifies"], 0,
        "fsed never presents the PIN by itself: {stats}"
    );
    assert!(fsed.terminate().success());
}

/// Puts the general practitioner's CPS back in its slot and waits for fsed to read both cards.
fn reinsert_cps(control: &std::path::Path, rpc: &mut Rpc) {
    common::order(
        control,
        &[
            "insert",
            "--slot",
            "cps",
            "--profile",
            "cps-medecin-generaliste",
        ],
    );
    wait_for("the CPS back", Duration::from_secs(30), || {
        (kinds(rpc) == ["cps", "vitale"]).then_some(())
    });
}
