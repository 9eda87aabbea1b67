//! Helpers of the end-to-end tests: the workspace's binaries started as
//! child processes (killed when dropped) and a line-oriented JSON-RPC client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod netns;

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The directory holding the workspace's built binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// A built binary of the workspace; fails clearly when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} missing: run `cargo build --workspace --bins` first (tests/run does)",
        p.display()
    );
    p
}

/// Writes the simulator's test PKI (`fse-sim pki`) into `dir`: the trust directory fsed reads.
pub fn write_test_pki(dir: &Path) -> PathBuf {
    let out = Command::new(bin("fse-sim"))
        .args(["pki", "--out", dir.to_str().unwrap()])
        .output()
        .expect("fse-sim pki");
    assert!(
        out.status.success(),
        "fse-sim pki: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.to_path_buf()
}

/// A command running `program` after `prefix` (a program and its arguments, such as
/// `ip netns exec NAMESPACE`: see [`netns::Lan::prefix`]); an empty prefix runs it directly.
pub fn command_in(prefix: &[OsString], program: impl AsRef<OsStr>) -> Command {
    match prefix.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
    }
}

/// A child process killed on drop, with its stdout lines forwarded to a channel.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Lines printed on stdout.
    pub lines: mpsc::Receiver<String>,
    name: String,
}

impl Proc {
    /// Starts `bin(name)` with `args`.
    pub fn start(name: &str, args: &[&str]) -> Proc {
        Proc::start_in(&[], name, args)
    }

    /// [`Proc::start`] after a command `prefix` ([`command_in`]): with `ip netns exec NS`, the
    /// prefix execs the program in place, so the child is the program itself (killed on drop).
    pub fn start_in(prefix: &[OsString], name: &str, args: &[&str]) -> Proc {
        let mut child = command_in(prefix, bin(name))
            .args(args)
            .env("FSED_LOG", "info")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines: rx,
            name: name.to_string(),
        }
    }

    /// Waits for a stdout line containing `needle`.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "{} did not print {needle:?} within {timeout:?} (exit: {:?})",
                    self.name,
                    self.child.try_wait()
                ),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < end,
                "{} did not stop on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `fsed` on pcscd with its state in `dir` and these extra flags; returns it, ready, and a client.
pub fn start_fsed(dir: &Path, extra: &[&str]) -> (Proc, Rpc) {
    let socket = dir.join("fsed.sock");
    let trust = write_test_pki(&dir.join("trust"));
    let mut args = vec![
        "--config",
        "/dev/null",
        "--state-dir",
        dir.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
        "--cards",
        "pcsc",
        "--trust-dir",
        trust.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut fsed = Proc::start("fsed", &args);
    fsed.wait_line("fsed ready", Duration::from_secs(30));
    let rpc = Rpc::connect(&socket, Duration::from_secs(10));
    (fsed, rpc)
}

/// The Unix socket of slot `i` of fsed's embedded virtual reader, in the test's `dir` (no TCP
/// port: tests running at once cannot take each other's).
pub fn virtual_slot(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("slot{i}.vpcd"))
}

/// [`virtual_slot`] as fsed and `fse_simulator::vpcd::serve` name it: `unix:PATH`.
pub fn virtual_slot_address(dir: &Path, i: usize) -> String {
    format!(
        "{}{}",
        fse_formats::vpcd::UNIX_PREFIX,
        virtual_slot(dir, i).display()
    )
}

/// Starts `fsed` with its embedded virtual reader on `slots` Unix socket slots in `dir`
/// ([`virtual_slot`] 0, 1, …; no pcscd), the spool transport (unless `config` or `extra`
/// names one) and the test PKI, its state in `dir`, `config` (TOML) as its configuration file
/// and these extra flags; returns it, ready, and a client.
pub fn start_fsed_virtual(dir: &Path, slots: usize, config: &str, extra: &[&str]) -> (Proc, Rpc) {
    start_fsed_virtual_in(&[], dir, slots, config, extra)
}

/// [`start_fsed_virtual`] run after a command `prefix` ([`command_in`]), such as a workstation
/// of a [`netns::Lan`]: its socket and reader slots are Unix sockets in `dir`, which work across
/// network namespaces, so the client returned is the test's own.
pub fn start_fsed_virtual_in(
    prefix: &[OsString],
    dir: &Path,
    slots: usize,
    config: &str,
    extra: &[&str],
) -> (Proc, Rpc) {
    let socket = dir.join("fsed.sock");
    let trust = write_test_pki(&dir.join("trust"));
    let config_file = dir.join("fsed.toml");
    std::fs::write(&config_file, config).unwrap();
    let slots: Vec<String> = (0..slots).map(|i| virtual_slot_address(dir, i)).collect();
    let mut args = vec![
        "--config",
        config_file.to_str().unwrap(),
        "--state-dir",
        dir.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
        "--cards",
        "virtual",
        "--trust-dir",
        trust.to_str().unwrap(),
    ];
    // The spool unless the configuration or the flags name a transport.
    if !config.contains("[transport]") && !extra.contains(&"--transport") {
        args.extend_from_slice(&["--transport", "spool"]);
    }
    for slot in &slots {
        args.extend_from_slice(&["--virtual-slot", slot]);
    }
    args.extend_from_slice(extra);
    let mut fsed = Proc::start_in(prefix, "fsed", &args);
    fsed.wait_line("fsed ready", Duration::from_secs(30));
    let rpc = Rpc::connect(&socket, Duration::from_secs(10));
    (fsed, rpc)
}

/// pcscd with the vpcd driver's two fixed slots (35963/35964) and the broker are shared by every
/// test of the binary, which run on parallel threads: two simulators cannot hold one slot, two
/// fseds on pcscd would share the cards, `pcscd_life` restarts pcscd and `broker_outage` stops
/// the broker. A test that uses any of them holds this turn for its whole length.
static SHARED_SERVICES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the turn on pcscd, its vpcd slots and the broker ([`SHARED_SERVICES`]); released when
/// the guard is dropped. A test that failed while holding it leaves it usable (poison ignored:
/// the next test starts its own processes).
pub fn shared_services() -> std::sync::MutexGuard<'static, ()> {
    SHARED_SERVICES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The broker the tests use (started by `tests/run`).
pub const AMQP: &str = "amqp://127.0.0.1:5672/%2f";

/// Starts `fse-sim insurer` on [`AMQP`] with `args` (after `--amqp URL`) and waits until it
/// takes lots.
pub fn start_insurer(args: &[&str]) -> Proc {
    let mut all = vec!["insurer", "--amqp", AMQP];
    all.extend_from_slice(args);
    let mut insurer = Proc::start("fse-sim", &all);
    insurer.wait_line("insurer ready", Duration::from_secs(30));
    insurer
}

/// [`start_fsed`] on the AMQP transport with `return_queue`, lots of at most `max_sheets`
/// sheets closed at `max_age_secs`.
pub fn start_fsed_amqp(
    dir: &Path,
    return_queue: &str,
    max_sheets: u32,
    max_age_secs: u32,
) -> (Proc, Rpc) {
    let (sheets, age) = (max_sheets.to_string(), max_age_secs.to_string());
    start_fsed(
        dir,
        &[
            "--transport",
            "amqp",
            "--return-queue",
            return_queue,
            "--lot-max-sheets",
            &sheets,
            "--lot-max-age-secs",
            &age,
        ],
    )
}

/// A JSON-RPC client on fsed's socket: `fsed_client`'s, with the tests' ways of failing
/// (a panic naming what went wrong) and their raw lines for the protocol's own tests.
pub struct Rpc {
    client: fsed_client::Client,
}

impl Rpc {
    /// Connects, retrying until the socket exists (at most `timeout`).
    pub fn connect(path: &Path, timeout: Duration) -> Rpc {
        let end = Instant::now() + timeout;
        loop {
            match fsed_client::Client::connect(path) {
                Ok(client) => {
                    client
                        .stream()
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    return Rpc { client };
                }
                Err(e) => {
                    assert!(Instant::now() < end, "cannot connect: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Sends a raw line and reads one reply line.
    pub fn raw(&mut self, line: &str) -> Value {
        self.client.write_raw(line.as_bytes()).unwrap();
        self.client.write_raw(b"\n").unwrap();
        self.read_reply()
    }

    /// Reads one line, which must be JSON.
    fn read_reply(&mut self) -> Value {
        let mut reply = String::new();
        self.client.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {reply:?}"))
    }

    /// Sends bytes as they are (no newline added).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.client.write_raw(bytes).unwrap();
    }

    /// Sends bytes on a connection fsed may be refusing (`TOO_MANY_CONNECTIONS`,
    /// `PEER_NOT_ALLOWED`): fsed reads the first request before it answers and closes, but a
    /// write it no longer takes (`BrokenPipe`, `ConnectionReset`) is no failure here: the
    /// error line is read all the same. Returns whether the bytes went.
    pub fn send_refusable(&mut self, bytes: &[u8]) -> bool {
        match self.client.write_raw(bytes) {
            Ok(()) => true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                false
            }
            Err(e) => panic!("write: {e}"),
        }
    }

    /// Reads one line, waiting at most `timeout`; later reads wait 30 s again.
    fn read_line_within(&mut self, timeout: Duration) -> (std::io::Result<usize>, String) {
        self.client
            .stream()
            .set_read_timeout(Some(timeout))
            .unwrap();
        let mut line = String::new();
        let read = self.client.read_line(&mut line);
        self.client
            .stream()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        (read, line)
    }

    /// Whether the server ends the connection within `timeout` (the end, or a reset) with no
    /// line before: `false` when a line comes or the time runs out.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        match self.read_line_within(timeout).0 {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    /// The next line within `timeout`, as text (newline included); `None` when none came or
    /// the server closed.
    pub fn next_text(&mut self, timeout: Duration) -> Option<String> {
        let (read, line) = self.read_line_within(timeout);
        match read {
            Ok(n) if n > 0 => Some(line),
            _ => None,
        }
    }

    /// The next line within `timeout`, parsed; `None` when none came or the server closed.
    pub fn next_line(&mut self, timeout: Duration) -> Option<Value> {
        self.next_text(timeout).map(|line| {
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("line is not JSON ({e}): {line:?}"))
        })
    }

    /// Calls a method; returns the whole reply object, which must be the next line.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.client.send(method, params).unwrap();
        let reply = self.read_reply();
        assert_eq!(reply["id"], json!(id), "reply id");
        reply
    }

    /// Reads lines until an `event` notification named `name` arrives (others are skipped).
    pub fn wait_event(&mut self, name: &str) -> Value {
        loop {
            let event = self
                .client
                .next_event()
                .unwrap_or_else(|e| panic!("no {name} event: {e}"));
            if event["event"] == json!(name) {
                return event;
            }
        }
    }

    /// Calls a method and returns its result, failing on an error reply.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        let reply = self.call(method, params);
        assert!(reply.get("error").is_none(), "{method} failed: {reply}");
        reply["result"].clone()
    }
}

/// Polls `f` until it returns Some, at most `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A random suffix for broker names, so runs never collide.
pub fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos())
    )
}

/// Sends an order to the running simulator; returns its printed answer.
pub fn order(control: &Path, args: &[&str]) -> Value {
    let out = Command::new(bin("fse-sim"))
        .arg("cards")
        .args(args)
        .arg("--control")
        .arg(control)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fse-sim cards {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A swap prints two answers (removed, inserted): the last one tells the outcome.
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// What fsed lists in its readers: (kind, serial) pairs.
pub fn serials(rpc: &mut Rpc) -> Vec<(String, String)> {
    let list = rpc.ok("cards.list", json!({}));
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["serial"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Writes a Vitale card profile of a caisse centre drawn at random; returns the profile file and
/// the card's destination organism. No insurer queue is bound to it: a queue an earlier run left
/// for the same centre is deleted (the broker outlives test runs, and 9,000 centres fill up).
pub fn vitale_of_new_centre(dir: &Path) -> (PathBuf, String) {
    let centre: u32 = rand::Rng::gen_range(&mut rand::thread_rng(), 1000..10_000);
    delete_queues(&[&fse_formats::wire::insurer_queue(
        "amo",
        &format!("01931{centre}"),
    )]);
    let profile = dir.join("vitale.toml");
    std::fs::write(
        &profile,
        format!(
            "kind = \"vitale\"\nserial = \"VIT-9{centre}\"\nregime = \"01\"\ncaisse = \"931\"\ncentre = \"{centre}\"\n\n\
             [[beneficiaries]]\nsurname = \"ROUTE\"\ngiven_name = \"Anne\"\nbirth_date = \"19800101\"\n\
             nir = \"2800193048027\"\nrights_from = \"20250101\"\nrights_until = \"20301231\"\n"
        ),
    )
    .unwrap();
    (profile, format!("01931{centre}"))
}

/// [`vitale_of_new_centre`] whose holder's AMC (a number new at every run) pays the
/// practitioner directly in tiers payant; returns the profile, the destination and the AMC number.
pub fn vitale_of_new_centre_with_amc(dir: &Path) -> (PathBuf, String, String) {
    let (profile, destination) = vitale_of_new_centre(dir);
    let amc = format!("7{}", &destination[5..]);
    let amc = format!("{amc:0<8}");
    delete_queues(&[&fse_formats::wire::insurer_queue("amc", &amc)]);
    let mut text = std::fs::read_to_string(&profile).unwrap();
    text.push_str(&format!(
        "\n[amc]\nnumber = \"{amc}\"\nname = \"Mutuelle ROUTE\"\ndirect = true\ntiers_payant = true\nfrom = \"20250101\"\nuntil = \"20301231\"\n"
    ));
    std::fs::write(&profile, text).unwrap();
    (profile, destination, amc)
}

/// Deletes broker queues a test made (best effort: `rabbitmqctl`).
pub fn delete_queues(names: &[&str]) {
    for name in names {
        for q in [name.to_string(), fse_formats::wire::dead_letter_queue(name)] {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_queue", &q])
                .output();
        }
    }
}

/// Messages ready in a broker queue (`rabbitmqctl list_queues`), `None` when it does not exist.
pub fn queue_messages(name: &str) -> Option<u64> {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == name).then(|| f.next()?.parse().ok())?
    })
}

/// Starts `fse-sim cards` on the vpcd slots at full speed (no simulated card latency), with
/// its control socket in `dir` and `extra` flags; returns it, ready, and its control socket.
pub fn start_fast_cards(dir: &Path, extra: &[&str]) -> (Proc, PathBuf) {
    fast_cards(&[], dir, &[], extra)
}

/// [`start_fast_cards`] on fsed's embedded virtual reader started by [`start_fsed_virtual`]
/// in the same `dir`: the CPS in [`virtual_slot`] 0, the Vitale card in slot 1.
pub fn start_fast_cards_on(dir: &Path, extra: &[&str]) -> (Proc, PathBuf) {
    start_fast_cards_on_in(&[], dir, extra)
}

/// [`start_fast_cards_on`] run after a command `prefix` ([`command_in`]), such as the
/// workstation of a [`netns::Lan`] whose fsed holds the reader (its slots and the control
/// socket are Unix sockets in `dir`).
pub fn start_fast_cards_on_in(prefix: &[OsString], dir: &Path, extra: &[&str]) -> (Proc, PathBuf) {
    let (cps, vitale) = (virtual_slot(dir, 0), virtual_slot(dir, 1));
    fast_cards(
        prefix,
        dir,
        &[
            "--cps-socket",
            cps.to_str().unwrap(),
            "--vitale-socket",
            vitale.to_str().unwrap(),
        ],
        extra,
    )
}

fn fast_cards(prefix: &[OsString], dir: &Path, ports: &[&str], extra: &[&str]) -> (Proc, PathBuf) {
    let control = dir.join("control.sock");
    let mut args = vec![
        "cards",
        "--control",
        control.to_str().unwrap(),
        "--latency-ms",
        "0",
        "--signature-latency-ms",
        "0",
    ];
    args.extend_from_slice(ports);
    args.extend_from_slice(extra);
    let mut sim = Proc::start_in(prefix, "fse-sim", &args);
    sim.wait_line("cards ready", Duration::from_secs(20));
    (sim, control)
}

/// Waits until fsed lists `n` cards in its readers.
pub fn wait_cards(rpc: &mut Rpc, n: usize) {
    wait_for("the cards", Duration::from_secs(30), || {
        (serials(rpc).len() == n).then_some(())
    });
}
