//! fsed's inputs bounded: what an insurer (or anyone who can write there) leaves in the spool
//! inbox, a flood of refused returns in the log, and socket clients that stay idle or open
//! too many connections.
//!
//! - A FIFO, a link to `/dev/zero` and a 1 GiB sparse file ahead of the real returns in the
//!   inbox: the returns behind them are applied, the three are quarantined with their
//!   reasons, fsed stays small and stops quickly on SIGTERM.
//! - 100,000 unreadable returns: a bounded number of log lines, with the count of those
//!   suppressed.
//! - Idle connections are closed after `api.idle_timeout_secs` with their reason, so new
//!   clients get in; a user past `api.max_connections_per_uid` is refused while another
//!   user's program still gets in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bin, wait_for, Rpc};
use serde_json::{json, Value};

/// fsed as a child process, its standard error kept line by line.
struct Fsed {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The thread reading standard error: done once fsed has exited.
    reader: Option<std::thread::JoinHandle<()>>,
    ready: std::sync::mpsc::Receiver<()>,
}

impl Fsed {
    /// Starts fsed with its embedded virtual reader on two slots of `dir`, the spool
    /// transport, the test PKI, its state in `dir` and `config` as its configuration file,
    /// and waits until it is ready.
    fn start(dir: &Path, config: &str, extra: &[&str]) -> Fsed {
        let trust = common::write_test_pki(&dir.join("trust"));
        let config_file = dir.join("fsed.toml");
        std::fs::write(&config_file, config).unwrap();
        let mut cmd = Command::new(bin("fsed"));
        cmd.args([
            "--config",
            config_file.to_str().unwrap(),
            "--state-dir",
            dir.to_str().unwrap(),
            "--socket",
            dir.join("fsed.sock").to_str().unwrap(),
            "--cards",
            "virtual",
            "--trust-dir",
            trust.to_str().unwrap(),
            "--transport",
            "spool",
        ]);
        for i in 0..2 {
            cmd.args(["--virtual-slot", &common::virtual_slot_address(dir, i)]);
        }
        cmd.args(extra)
            .env("FSED_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, ready) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("fsed ready") {
                    let _ = tx.send(());
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let kept = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        let fsed = Fsed {
            child,
            stderr,
            reader: Some(reader),
            ready,
        };
        fsed.ready
            .recv_timeout(Duration::from_secs(60))
            .expect("fsed ready");
        fsed
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// fsed's resident memory (`VmRSS` of `/proc/PID/status`), in kB.
    fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// Sends SIGTERM; returns how long fsed took to exit (at most 60 s, else the test fails).
    fn terminate(&mut self) -> Duration {
        let asked = Instant::now();
        assert!(Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap()
            .success());
        wait_for("fsed's exit", Duration::from_secs(60), || {
            self.child.try_wait().unwrap()
        });
        asked.elapsed()
    }

    /// The lines fsed wrote to standard error so far (all of them once it has exited and its
    /// reader thread has read to the end).
    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Every standard error line, once fsed has exited: its reader has read to the end.
    #[cfg_attr(not(feature = "full"), allow(dead_code))]
    fn stderr_to_end(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.stderr()
    }
}

impl Drop for Fsed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `fse-sim insurer` on the spool of fsed's state directory `dir`, answering ARLs and payment
/// returns.
fn start_insurer(dir: &Path) -> common::Proc {
    let spool = dir.join("spool");
    common::Proc::start(
        "fse-sim",
        &[
            "insurer",
            "--spool-outbox",
            spool.join("outbox").to_str().unwrap(),
            "--spool-inbox",
            spool.join("inbox").to_str().unwrap(),
            "--trust-dir",
            dir.join("trust").to_str().unwrap(),
            "--payments",
        ],
    )
}

#[test]
fn a_fifo_a_link_to_dev_zero_and_a_sparse_gib_are_quarantined_and_the_returns_behind_them_applied()
{
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("spool/inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    // Ahead of the insurer's returns (`<lot id>.arl`, `<lot id>.pay`: lot ids start with a
    // digit of 1 to 9) in the inbox's name order.
    assert!(Command::new("mkfifo")
        .arg(inbox.join("0-fifo.arl"))
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink("/dev/zero", inbox.join("0-zero.pay")).unwrap();
    let sparse = std::fs::File::create(inbox.join("0-sparse.arl")).unwrap();
    // 1 GiB = 1,073,741,824 bytes, with no block written.
    sparse.set_len(1 << 30).unwrap();
    drop(sparse);

    let mut fsed = Fsed::start(dir.path(), "", &["--lot-max-sheets", "1"]);
    let (_cards, _control) = common::start_fast_cards_on(dir.path(), &[]);
    let _insurer = start_insurer(dir.path());
    let socket = dir.path().join("fsed.sock");
    let mut events = Rpc::connect(&socket, Duration::from_secs(10));
    events.ok(
        "events.subscribe",
        json!({"events": ["arl.received", "sheet.paid"]}),
    );
    let mut rpc = Rpc::connect(&socket, Duration::from_secs(10));
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    let sheet = rpc.ok(
        "fse.create",
        json!({"act": {"code": "G"}, "beneficiary": 0, "tiers_payant": {"amo": true}, "idempotency_key": "behind-the-fifo"}),
    );
    // A lot of one sheet closes at once; its ARL, then its payment return, come after the
    // three entries in the inbox.
    let arl = events.wait_event("arl.received");
    assert_eq!(arl["status"], json!("positive"), "{arl}");
    let paid = events.wait_event("sheet.paid");
    assert_eq!(paid["sheet_id"], sheet["id"], "{paid}");

    // The three are in the quarantine folder, each with its reason.
    let quarantine = inbox.join(".quarantine");
    for (name, why) in [
        ("0-fifo.arl", "FIFO"),
        ("0-zero.pay", "symbolic link"),
        (
            "0-sparse.arl",
            "1073741824 bytes, over the limit of 16777216",
        ),
    ] {
        assert!(
            std::fs::symlink_metadata(inbox.join(name)).is_err(),
            "{name} left the inbox"
        );
        assert!(
            std::fs::symlink_metadata(quarantine.join(name)).is_ok(),
            "{name} quarantined"
        );
        let reason = std::fs::read_to_string(quarantine.join(format!("{name}.reason"))).unwrap();
        assert!(reason.contains(why), "{name}: {reason}");
        assert!(
            fsed.stderr()
                .iter()
                .any(|l| l.contains("quarantined") && l.contains(name) && l.contains(why)),
            "{name}: logged"
        );
    }
    // Not a byte of /dev/zero or of the sparse GiB was kept: well under 200 MB resident.
    let rss = fsed.rss_kb();
    assert!(rss < 200 * 1024, "fsed's RSS is {rss} kB");
    // The stop is not held by a read of the FIFO.
    let took = fsed.terminate();
    eprintln!("fsed: RSS {rss} kB with the three in quarantine; SIGTERM to exit {took:?}");
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

// Minutes long: of the full tier (feature `full`) only.
#[cfg(feature = "full")]
#[test]
fn a_hundred_thousand_unreadable_returns_write_a_bounded_log_with_their_count() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("spool/inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    const FILES: usize = 100_000;
    for i in 0..FILES {
        std::fs::write(inbox.join(format!("junk-{i:06}.arl")), b"not DER").unwrap();
    }
    let started = Instant::now();
    let mut fsed = Fsed::start(dir.path(), "", &[]);
    // Each is refused and removed.
    wait_for("the inbox emptied", Duration::from_secs(600), || {
        (std::fs::read_dir(&inbox)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".arl")
            })
            .count()
            == 0)
            .then_some(())
    });
    let minutes = started.elapsed().as_secs() / 60 + 1;
    fsed.terminate();
    let lines = fsed.stderr_to_end();
    let refused = lines
        .iter()
        .filter(|l| l.contains("fsed::returns: return refused"))
        .count();
    // Each summary says how many it stands for: "… N more like this suppressed".
    let suppressed: u64 = lines
        .iter()
        .filter(|l| l.contains("more like this suppressed") && l.contains("returns.rs"))
        .map(|l| {
            let before = l.split(" more like this").next().unwrap();
            before.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    // At most 10 lines a minute were written (one window a minute, plus the one running at
    // the stop); every refused return is a line or counted in a summary.
    let bound = 10 * (minutes as usize + 1);
    eprintln!(
        "{FILES} refused returns in {:?}: {refused} lines, {suppressed} counted in summaries, {} lines in all",
        started.elapsed(),
        lines.len()
    );
    assert!(
        refused <= bound,
        "{refused} lines in {minutes} min (at most {bound})"
    );
    assert!(refused >= 10, "the first 10 are written: {refused}");
    assert_eq!(refused as u64 + suppressed, FILES as u64);
    // The whole log stays short: not a line per return.
    assert!(lines.len() < 200, "{} lines", lines.len());
}

/// The `uid` of this test process.
fn own_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

#[test]
fn idle_connections_are_closed_and_one_user_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let me = own_uid();
    let other: u32 = if me == 4242 { 4243 } else { 4242 };
    let mut fsed = Fsed::start(
        dir.path(),
        &format!(
            "[api]\nmax_connections = 8\nmax_connections_per_uid = 2\nidle_timeout_secs = 2\nallowed_users = [\"{me}\", \"{other}\"]\nallowed_groups = []\n"
        ),
        &[],
    );
    let socket = dir.path().join("fsed.sock");
    // Two connections of this user, both served.
    let mut first = Rpc::connect(&socket, Duration::from_secs(10));
    let mut second = Rpc::connect(&socket, Duration::from_secs(10));
    first.ok("system.version", json!({}));
    let last_request = Instant::now();
    second.ok("system.version", json!({}));
    // A third of the same user is refused by the user's limit (the server serves 2 of 8).
    let mut third = Rpc::connect(&socket, Duration::from_secs(10));
    third.send_refusable(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"system.version\"}\n");
    let r = third.next_line(Duration::from_secs(30)).unwrap();
    assert_eq!(r["error"]["code"], json!(1042), "{r}");
    assert_eq!(r["error"]["data"]["limit"], json!(2), "{r}");
    assert_eq!(r["error"]["data"]["uid"], json!(me), "{r}");
    assert!(third.closed_within(Duration::from_secs(30)));
    // Another user's program gets in meanwhile (a process of another uid needs root to start).
    if me == 0 {
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(dir.path(), perms).unwrap();
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o666);
        std::fs::set_permissions(&socket, perms).unwrap();
        let out = Command::new(bin("fsectl"))
            .args(["--socket", socket.to_str().unwrap(), "--json", "version"])
            .env_remove("FSED_SOCKET")
            .uid(other)
            .gid(other)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fsectl as uid {other}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["name"], json!("fsed"), "{v}");
    } else {
        eprintln!("not root: a client of another uid is not tried");
    }
    // Both quiet connections are closed once idle, each with its reason.
    for rpc in [&mut first, &mut second] {
        let r = rpc.next_line(Duration::from_secs(30)).unwrap();
        assert_eq!(r["error"]["code"], json!(1043), "{r}");
        assert_eq!(r["error"]["data"]["idle_timeout_secs"], json!(2), "{r}");
        assert_eq!(r["id"], Value::Null, "{r}");
        assert!(rpc.closed_within(Duration::from_secs(30)));
    }
    assert!(
        last_request.elapsed() >= Duration::from_secs(2),
        "closed only once idle for 2 s"
    );
    // Their places are free: new clients of the same user get in. One subscribes to events
    // and is kept although as quiet as the others.
    let mut subscriber = wait_for("a connection served again", Duration::from_secs(30), || {
        let mut rpc = Rpc::connect(&socket, Duration::from_secs(10));
        rpc.send_refusable(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"events.subscribe\",\"params\":{}}\n",
        );
        let r = rpc.next_line(Duration::from_secs(30))?;
        r.get("result").is_some().then_some(rpc)
    });
    let subscribed_at = Instant::now();
    let mut quiet = Rpc::connect(&socket, Duration::from_secs(10));
    quiet.ok("system.version", json!({}));
    let r = quiet.next_line(Duration::from_secs(30)).unwrap();
    assert_eq!(r["error"]["code"], json!(1043), "{r}");
    assert!(subscribed_at.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        subscriber.ok("system.version", json!({}))["name"],
        json!("fsed")
    );
    fsed.terminate();
}
