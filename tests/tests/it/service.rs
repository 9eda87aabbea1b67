//! fsed as a service: started by socket activation (`systemd-socket-activate`)
//! or on its own, its notifications to the service manager (READY=1, a
//! watchdog keep-alive, STOPPING=1), SIGTERM in the middle of a load (every
//! sheet answered is in the store after a restart, exit status 0), the units
//! checked by `systemd-analyze` (verify, security exposure ≤ 2.0, the
//! sysusers and tmpfiles snippets), `fsed check-config` naming every bad key,
//! and SIGHUP applying a new lot size. fsed runs with its embedded virtual
//! reader on Unix socket slots in each test's directory and the spool
//! transport. The two tests of systemd's own tools (socket activation, the units) are of the
//! full tier only (feature `full`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bin, wait_for, write_test_pki, Rpc};
use serde_json::{json, Value};

/// The longest a stop may take: the unit's `TimeoutStopSec=`.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A process whose standard output and error lines are kept, killed on drop.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd
            .env("FSED_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("  | {line}");
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Daemon { child, lines }
    }

    /// Waits for an output line containing every one of `needles`.
    fn wait_output(&mut self, needles: &[&str], timeout: Duration) -> String {
        let lines = Arc::clone(&self.lines);
        let what = format!("a line with {needles:?}");
        wait_for(&what, timeout, || {
            lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .cloned()
        })
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// SIGTERM, then the exit status, which must come within [`STOP_DEADLINE`].
    fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        let end = Instant::now() + STOP_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "fsed did not stop within {STOP_DEADLINE:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// fsed's arguments: state in `dir`, its own socket `dir/fsed.sock`, the embedded virtual
/// reader on two Unix socket slots in `dir` (`common::virtual_slot`), the test PKI, the spool
/// transport, then `extra`.
fn fsed_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let trust = dir.join("trust");
    if !trust.join("root.pem").exists() {
        write_test_pki(&trust);
    }
    let mut args: Vec<String> = [
        "--state-dir",
        dir.to_str().unwrap(),
        "--socket",
        dir.join("fsed.sock").to_str().unwrap(),
        "--cards",
        "virtual",
        "--virtual-slot",
        &common::virtual_slot_address(dir, 0),
        "--virtual-slot",
        &common::virtual_slot_address(dir, 1),
        "--trust-dir",
        trust.to_str().unwrap(),
        "--transport",
        "spool",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    if !extra.contains(&"--config") {
        args.extend(["--config".to_string(), "/dev/null".to_string()]);
    }
    args.extend(extra.iter().map(ToString::to_string));
    args
}

fn fsed(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin("fsed"));
    cmd.args(fsed_args(dir, extra));
    cmd
}

/// Starts fsed and waits until it is ready.
fn start_fsed(dir: &Path, extra: &[&str]) -> (Daemon, Rpc) {
    let mut d = Daemon::spawn(fsed(dir, extra));
    d.wait_output(&["fsed ready"], Duration::from_secs(30));
    let rpc = Rpc::connect(&dir.join("fsed.sock"), Duration::from_secs(10));
    (d, rpc)
}

/// The simulated cards on the slots of fsed's virtual reader in `dir`, at full speed.
fn start_cards(dir: &Path) -> common::Proc {
    common::start_fast_cards_on(dir, &[]).0
}

/// Waits for the two cards and verifies the CPS PIN.
fn cards_ready(rpc: &mut Rpc) {
    common::wait_cards(rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
}

fn sheet(key: &str) -> Value {
    json!({"act": {"code": "G"}, "beneficiary": 0, "tiers_payant": {"amo": true}, "idempotency_key": key})
}

#[cfg(feature = "full")]
#[test]
fn socket_activation_serves_the_socket_passed_and_leaves_it_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let activated = dir.path().join("activated.sock");
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("-l").arg(&activated).arg(bin("fsed"));
    cmd.args(fsed_args(dir.path(), &[]));
    let mut d = Daemon::spawn(cmd);
    d.wait_output(&["Listening on"], Duration::from_secs(20));
    // The first connection starts fsed, which takes over the listening socket (fd 3).
    let mut rpc = Rpc::connect(&activated, Duration::from_secs(10));
    let version = rpc.ok("system.version", json!({}));
    assert_eq!(version["name"], json!("fsed"));
    d.wait_output(&["fsed ready", "activated=true"], Duration::from_secs(30));
    assert!(
        !dir.path().join("fsed.sock").exists(),
        "fsed bound its own socket although one was passed"
    );
    drop(rpc);
    assert!(d.stop().success(), "exit status after SIGTERM");
    assert!(
        activated.exists(),
        "fsed removed the socket file it did not create"
    );
}

/// Simulated cards on Unix socket slots of the embedded virtual reader (no TCP): read, the PIN
/// verified, a secured sheet signed by the Vitale card; after a restart fsed binds the same
/// paths again (the files its first run left are replaced) and the cards come back.
#[test]
fn cards_on_unix_socket_slots_serve_fsed_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cps, vitale) = (dir.path().join("cps.vpcd"), dir.path().join("vitale.vpcd"));
    let slots = [
        format!("unix:{}", cps.display()),
        format!("unix:{}", vitale.display()),
    ];
    let trust = write_test_pki(&dir.path().join("trust"));
    let socket = dir.path().join("fsed.sock");
    let start = || {
        let mut cmd = Command::new(bin("fsed"));
        cmd.args(["--config", "/dev/null", "--state-dir"])
            .arg(dir.path())
            .arg("--socket")
            .arg(&socket)
            .args(["--cards", "virtual", "--transport", "spool", "--trust-dir"])
            .arg(&trust)
            .args(["--virtual-slot", &slots[0], "--virtual-slot", &slots[1]]);
        let mut d = Daemon::spawn(cmd);
        d.wait_output(&["fsed ready"], Duration::from_secs(30));
        let rpc = Rpc::connect(&socket, Duration::from_secs(10));
        (d, rpc)
    };
    let (mut d, mut rpc) = start();
    let _cards = common::start_fast_cards(
        dir.path(),
        &[
            "--cps-socket",
            cps.to_str().unwrap(),
            "--vitale-socket",
            vitale.to_str().unwrap(),
        ],
    );
    for round in ["first", "after the restart"] {
        cards_ready(&mut rpc);
        let mut readers: Vec<Value> = rpc
            .ok("cards.list", json!({}))
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["reader"].clone())
            .collect();
        readers.sort_by_key(ToString::to_string);
        assert_eq!(
            readers,
            [
                json!("fsed virtual reader 0"),
                json!("fsed virtual reader 1")
            ],
            "{round}"
        );
        let made = rpc.ok(
            "fse.create",
            sheet(&format!("unix-{}", round.replace(' ', "-"))),
        );
        assert_eq!(made["state"], json!("accepted"), "{round}");
        assert_eq!(made["sheet"]["mode"], json!("secured"), "{round}");
        assert_eq!(
            made["sheet"]["presence"]["signature"]
                .as_str()
                .map(str::len),
            Some(128),
            "{round}: the Vitale card signed the proof of presence"
        );
        drop(rpc);
        assert!(d.stop().success(), "{round}: exit status after SIGTERM");
        assert!(cps.exists() && vitale.exists(), "{round}: slot sockets");
        (d, rpc) = start();
    }
    drop(rpc);
    assert!(d.stop().success());
}

#[test]
fn a_plain_start_binds_answers_and_removes_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, mut rpc) = start_fsed(dir.path(), &[]);
    let version = rpc.ok("system.version", json!({}));
    assert_eq!(version["name"], json!("fsed"));
    d.wait_output(&["fsed ready", "activated=false"], Duration::from_secs(30));
    drop(rpc);
    assert!(d.stop().success(), "exit status after SIGTERM");
    assert!(!dir.path().join("fsed.sock").exists(), "socket file left");
}

/// Reads notifications until one has `needle`; returns every message read.
fn notifications_until(socket: &UnixDatagram, needle: &str, seen: &mut Vec<String>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {needle} notification (got {seen:?}): {e}"));
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        let done = msg.lines().any(|l| l == needle);
        seen.push(msg);
        if done {
            return;
        }
    }
}

#[test]
fn the_service_manager_hears_ready_keep_alives_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut cmd = fsed(dir.path(), &[]);
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "1000000")
        .env("JOURNAL_STREAM", "8:12345");
    let mut d = Daemon::spawn(cmd);
    let mut seen = Vec::new();
    notifications_until(&notify, "READY=1", &mut seen);
    let ready = seen.last().unwrap().clone();
    assert!(
        ready.contains("STATUS=ready: 0 sheets queued"),
        "status with READY=1: {ready:?}"
    );
    // Ready means the socket listens.
    let mut rpc = Rpc::connect(&dir.path().join("fsed.sock"), Duration::from_secs(1));
    rpc.ok("system.version", json!({}));
    // The watchdog asked for a keep-alive every 0.5 s; the store answers, so they come.
    notifications_until(&notify, "WATCHDOG=1", &mut seen);
    drop(rpc);
    d.signal("TERM");
    notifications_until(&notify, "STOPPING=1", &mut seen);
    assert!(d.stop().success(), "exit status after SIGTERM");
    let order: Vec<&str> = seen
        .iter()
        .flat_map(|m| m.lines())
        .filter(|l| ["READY=1", "STOPPING=1"].contains(l))
        .collect();
    assert_eq!(order, ["READY=1", "STOPPING=1"], "{seen:?}");
    // Under journald: a priority prefix on each log line, no colours, no time stamp.
    let ready = d.wait_output(&["fsed ready", "activated=false"], Duration::from_secs(30));
    assert!(ready.starts_with("<6> INFO"), "{ready:?}");
    let lines = d.lines.lock().unwrap().clone();
    let logged: Vec<&String> = lines.iter().filter(|l| l.contains(" fsed::")).collect();
    assert!(logged.len() >= 3, "{lines:?}");
    assert!(
        logged
            .iter()
            .all(|l| l.starts_with('<') && !l.contains('\u{1b}')),
        "{logged:?}"
    );
}

/// A client that records each sheet fsed accepted and stops at the first failure (fsed is
/// going away under it).
fn client(
    socket: PathBuf,
    c: usize,
    accepted: Arc<Mutex<HashMap<String, Value>>>,
    made: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let Ok(stream) = UnixStream::connect(&socket) else {
        return;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut conn = BufReader::new(stream);
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let key = format!("term-{c}-{i}");
        let line = json!({"jsonrpc": "2.0", "id": i, "method": "fse.create", "params": sheet(&key)})
            .to_string() + "\n";
        if conn.get_mut().write_all(line.as_bytes()).is_err() {
            return;
        }
        let mut reply = String::new();
        match conn.read_line(&mut reply) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        let reply: Value = serde_json::from_str(&reply).unwrap();
        match reply.get("result") {
            Some(result) => {
                accepted.lock().unwrap().insert(key, result.clone());
                made.fetch_add(1, Ordering::Relaxed);
            }
            None => panic!("{key}: {reply}"),
        }
    }
}

#[test]
fn sigterm_under_load_exits_0_and_loses_no_sheet_that_was_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, mut rpc) = start_fsed(
        dir.path(),
        &["--lot-max-sheets", "50", "--lot-max-age-secs", "1"],
    );
    let _cards = start_cards(dir.path());
    cards_ready(&mut rpc);
    let socket = dir.path().join("fsed.sock");
    let accepted: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let made = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (socket, accepted, made, stop) =
                (socket.clone(), accepted.clone(), made.clone(), stop.clone());
            std::thread::spawn(move || client(socket, c, accepted, made, stop))
        })
        .collect();
    wait_for("300 sheets", Duration::from_secs(120), || {
        (made.load(Ordering::Relaxed) >= 300).then_some(())
    });
    let status = d.stop();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(
        status.success(),
        "exit status after SIGTERM under load: {status:?}"
    );
    // The process has exited; its last lines may still be on their way through the pipe.
    d.wait_output(&["stopped"], Duration::from_secs(30));
    drop(rpc);
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 300);

    // Restarted on the same state: every answered sheet is there, as answered.
    let (mut d, mut rpc) = start_fsed(dir.path(), &[]);
    for (key, answer) in &accepted {
        let id = answer["id"].as_i64().unwrap();
        let stored = rpc.ok("fse.get", json!({"id": id}));
        assert_eq!(stored["number"], answer["number"], "{key}: sheet {id}");
    }
    let mut listed = HashSet::new();
    let mut after = 0;
    loop {
        let page = rpc.ok("fse.list", json!({"limit": 500, "after_id": after}));
        let page = page.as_array().unwrap().clone();
        let Some(last) = page.last() else { break };
        after = last["id"].as_i64().unwrap();
        listed.extend(page.iter().map(|s| s["id"].as_i64().unwrap()));
    }
    for answer in accepted.values() {
        assert!(listed.contains(&answer["id"].as_i64().unwrap()));
    }
    drop(rpc);
    assert!(d.stop().success());

    // The store itself: SQLite's own checks, and one number per sheet.
    let db = rusqlite::Connection::open(dir.path().join("fsed.db")).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let dangling: i64 = db
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(dangling, 0, "foreign keys");
    let q = fse_queue::Queue::open(&dir.path().join("fsed.db")).unwrap();
    let mut numbers = HashSet::new();
    let mut after = fse_queue::SheetId(0);
    loop {
        let page = q.list_sheets(None, 1000, after).unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        for s in &page {
            assert!(
                numbers.insert((s.practitioner_id.clone(), s.number)),
                "sheet number {} twice",
                s.number
            );
        }
    }
    // Requests read before SIGTERM were finished and answered; none was read after it.
    assert_eq!(numbers.len(), accepted.len(), "sheets stored vs answered");
}

/// The units copied where `systemd-analyze` can read them, fsed's path made the built one.
#[cfg(feature = "full")]
fn units_in(dir: &Path) -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    let service = std::fs::read_to_string(root.join("fsed.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/bin/fsed "));
    let service = service.replace(
        "ExecStart=/usr/bin/fsed ",
        &format!("ExecStart={} ", bin("fsed").display()),
    );
    std::fs::write(dir.join("fsed.service"), service).unwrap();
    std::fs::copy(root.join("fsed.socket"), dir.join("fsed.socket")).unwrap();
    for f in ["fsed.sysusers", "fsed.tmpfiles"] {
        std::fs::copy(root.join(f), dir.join(f)).unwrap();
    }
    (dir.join("fsed.service"), dir.join("fsed.socket"))
}

#[cfg(feature = "full")]
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (tests/run installs systemd)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[cfg(feature = "full")]
#[test]
fn the_units_verify_and_expose_at_most_2_0() {
    let dir = tempfile::tempdir().unwrap();
    let (service, socket) = units_in(dir.path());
    let (ok, text) = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .arg(&service)
        .arg(&socket));
    assert!(ok, "systemd-analyze verify: {text}");
    assert!(
        !text.contains("Unknown") && !text.contains("Failed"),
        "systemd-analyze verify: {text}"
    );

    let (_, text) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&service));
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            let rest = l.split("Overall exposure level for fsed.service:").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no exposure in: {text}"));
    eprintln!("systemd-analyze security: exposure {exposure}");
    assert!(exposure <= 2.0, "exposure {exposure}:\n{text}");

    // The sysusers and tmpfiles snippets in an image of their own: the user, then the
    // directories owned by it.
    let image = dir.path().join("image");
    std::fs::create_dir_all(image.join("etc")).unwrap();
    let (ok, text) = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", image.display()))
        .arg(dir.path().join("fsed.sysusers")));
    assert!(ok, "systemd-sysusers: {text}");
    let passwd = std::fs::read_to_string(image.join("etc/passwd")).unwrap();
    let fsed_user = passwd
        .lines()
        .find(|l| l.starts_with("fsed:"))
        .unwrap_or_else(|| panic!("no fsed user in {passwd}"));
    let uid: u32 = fsed_user.split(':').nth(2).unwrap().parse().unwrap();
    let (ok, text) = run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", image.display()))
        .arg("--create")
        .arg(dir.path().join("fsed.tmpfiles")));
    assert!(ok, "systemd-tmpfiles: {text}");
    use std::os::unix::fs::MetadataExt;
    let run_dir = std::fs::metadata(image.join("run/fsed")).unwrap();
    assert_eq!(
        (run_dir.uid(), run_dir.mode() & 0o7777),
        (uid, 0o750),
        "/run/fsed"
    );
    let etc = std::fs::metadata(image.join("etc/fsed")).unwrap();
    assert_eq!((etc.uid(), etc.gid(), etc.mode() & 0o7777), (0, uid, 0o750));
    // The socket is where the service's RuntimeDirectory puts fsed's default one.
    let socket_unit = std::fs::read_to_string(&socket).unwrap();
    assert!(socket_unit.contains("ListenStream=/run/fsed/fsed.sock"));
    let service_unit = std::fs::read_to_string(&service).unwrap();
    assert!(service_unit.contains("RuntimeDirectory=fsed"));
    assert!(service_unit.contains("Type=notify"));
}

#[test]
fn check_config_names_every_bad_key_and_sighup_applies_a_new_lot_size() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fsed.toml");
    std::fs::write(
        &config,
        "[lots]\nmax_sheet = 3\nmax_age_secs = \"soon\"\n[transport]\nwindow = 0\n",
    )
    .unwrap();
    let out = Command::new(bin("fsed"))
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .env("FSED_LOTS_DEADLINE_ALARM_DAYS", "x")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check-config accepted: {err}");
    for key in [
        "fsed: lots.max_sheet: unknown field",
        "fsed: lots.max_age_secs: invalid type",
        "fsed: transport.window: 1 to 1024 lots",
        "fsed: lots.deadline_alarm_days: \"x\" is not a whole number (from FSED_LOTS_DEADLINE_ALARM_DAYS)",
    ] {
        assert!(err.lines().any(|l| l.starts_with(key)), "{key} in:\n{err}");
    }
    let out = Command::new(bin("fsed"))
        .args([
            "--config",
            "/dev/null",
            "--lot-max-sheets",
            "0",
            "check-config",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("lots.max_sheets: must be between 1 and"),
        "{err}"
    );

    // A running fsed, logging everything: lots of 1000 sheets, so three sheets make none.
    std::fs::write(&config, "[lots]\nmax_sheets = 1000\nmax_age_secs = 3600\n").unwrap();
    let (mut d, mut rpc) = start_fsed(
        dir.path(),
        &["--config", config.to_str().unwrap(), "--log-level", "debug"],
    );
    let _cards = start_cards(dir.path());
    cards_ready(&mut rpc);
    for i in 0..3 {
        rpc.ok("fse.create", sheet(&format!("hup-{i}")));
    }
    let lots = rpc.ok("lots.list", json!({}));
    assert_eq!(lots.as_array().unwrap().len(), 0, "{lots}");

    // A bad file on SIGHUP: named, and the running configuration stays.
    std::fs::write(&config, "[lots]\nmax_sheets = 0\nmax_age_secs = 3600\n").unwrap();
    d.signal("HUP");
    d.wait_output(
        &[
            "configuration not reloaded",
            "lots.max_sheets: must be between",
        ],
        Duration::from_secs(20),
    );
    rpc.ok("system.version", json!({}));
    assert_eq!(rpc.ok("lots.list", json!({})).as_array().unwrap().len(), 0);

    // Lots of 3: the three sheets waiting make one at once.
    std::fs::write(&config, "[lots]\nmax_sheets = 3\nmax_age_secs = 3600\n").unwrap();
    d.signal("HUP");
    d.wait_output(
        &["configuration applied", "lots.max_sheets 1000 -> 3"],
        Duration::from_secs(20),
    );
    let lot = wait_for("a lot of 3", Duration::from_secs(30), || {
        let lots = rpc.ok("lots.list", json!({}));
        lots.as_array().unwrap().first().cloned()
    });
    assert_eq!(lot["sheet_count"], json!(3), "{lot}");
    drop(rpc);
    assert!(d.stop().success());

    // Even at debug level, neither the PIN (as text or in a VERIFY APDU) nor the NIRs of the
    // card's beneficiaries (profile vitale-famille) reach the log.
    let lines = d.lines.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains("DEBUG")), "no debug lines");
    assert!(
        !lines.iter().any(|l| l.contains('\u{1b}')),
        "colours on a pipe"
    );
    for secret in ["1850578006084", "2150375112345", "31323334", "\"1234\""] {
        assert!(
            !lines.iter().any(|l| l.contains(secret)),
            "{secret} logged: {:?}",
            lines.iter().find(|l| l.contains(secret))
        );
    }
}
