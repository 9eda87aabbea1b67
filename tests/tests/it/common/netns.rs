//! A LAN of workstations on this machine, for the end-to-end tests of fseds talking to each
//! other (issue 21).
//!
//! Two ways of making it, chosen when the [`Lan`] is made ([`LanMode`], [`LAN_ENV`]):
//!
//! - **Network namespaces** (root and a working `ip netns`): each workstation `i` is a
//!   namespace `fsedlan-PID-SEQ-wsI` with `lo` up and one interface, [`LAN_INTERFACE`],
//!   addressed `10.213.K.(i+1)/24` (`K` from the pid: concurrent runs differ). Its other end,
//!   `wsI`, is a port of the bridge `br0` in a hub namespace of its own, `fsedlan-PID-SEQ-hub`.
//!   Nothing is added to the root namespace: no interface, no address, no route. A cut sets the
//!   workstation's own interface down: packets to and from it are lost, as when its cable is
//!   pulled (a connection across it stalls; a new one times out).
//! - **Loopback** (the fallback, or forced): workstation `i` is `127.0.0.(2+i)`, its commands
//!   run unconfined, and the links between workstations are TCP relays the test owns, one per
//!   (from, to, port) made by [`Lan::route`]: a cut of `i` closes every relayed connection to or
//!   from `i` and refuses new ones (connection refused) until it is restored.
//!
//! Either way, a program reaches a service of workstation `to` at [`Lan::route`]`(from, to,
//! port)`, and runs inside workstation `i` through [`Lan::command`] or [`Lan::prefix`]. Unix
//! sockets (fsed's API socket, its virtual reader slots, the card simulator's control socket)
//! are files and work across namespaces: the test talks to each fsed from its own namespace.
//!
//! At start, namespaces a dead run left (their pid is no longer alive) are removed with the
//! processes still inside them. Dropping the [`Lan`] kills what still runs inside its
//! workstations and deletes its namespaces, which takes their interfaces with them.

mod relay;

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Proc, Rpc};

/// The environment variable that chooses the mode of [`Lan::new`]: `loopback` forces the
/// fallback, `netns` forces namespaces (failing when they cannot be made), unset, empty or
/// `auto` takes namespaces when they can be made and loopback otherwise.
pub const LAN_ENV: &str = "FSED_TEST_LAN";

/// The workstation's own end of its link, inside its namespace.
pub const LAN_INTERFACE: &str = "lan0";

/// What every namespace a [`Lan`] makes is named after: `fsedlan-PID-SEQ-…`.
const NAME_PREFIX: &str = "fsedlan-";

/// The bridge in the hub namespace.
const BRIDGE: &str = "br0";

/// The bound of every wait on a link's state: generous, for a loaded machine.
const LINK_WAIT: Duration = Duration::from_secs(30);

/// How long a probe's order may take beyond its own bound before the probe counts as stuck.
const PROBE_MARGIN: Duration = Duration::from_secs(30);

/// Lans made by this process so far: the `SEQ` of their names.
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// How a [`Lan`]'s workstations are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LanMode {
    /// A network namespace per workstation, joined by a bridge in a hub namespace.
    Namespaces,
    /// Loopback addresses `127.0.0.(2+i)`, links through relays owned by the test.
    Loopback,
}

impl LanMode {
    /// The mode [`LAN_ENV`] forces, `None` when it leaves the choice to [`Lan::new`]; a value
    /// it does not know fails the test.
    pub fn from_env() -> Option<LanMode> {
        match std::env::var(LAN_ENV).as_deref() {
            Err(_) | Ok("" | "auto") => None,
            Ok("loopback") => Some(LanMode::Loopback),
            Ok("netns") => Some(LanMode::Namespaces),
            Ok(other) => panic!("{LAN_ENV}={other:?}: expected loopback, netns or auto"),
        }
    }
}

/// `n` workstations on one LAN; everything it made is removed on drop.
pub struct Lan {
    mode: LanMode,
    addresses: Vec<Ipv4Addr>,
    namespaces: Option<Namespaces>,
    relays: Option<relay::Relays>,
}

impl Lan {
    /// `n` workstations (1 to 200), in the mode [`LAN_ENV`] forces, else in network
    /// namespaces when they can be made, else on loopback addresses. Says which on stderr.
    pub fn new(n: usize) -> Lan {
        if let Some(mode) = LanMode::from_env() {
            return Lan::with_mode(n, mode);
        }
        match Namespaces::make(n) {
            Ok(namespaces) => Lan::on_namespaces(namespaces),
            Err(why) => {
                eprintln!("lan: no network namespaces ({why}); loopback addresses instead");
                Lan::on_loopback(n)
            }
        }
    }

    /// `n` workstations (1 to 200) in this mode; fails the test when namespaces are asked for
    /// and cannot be made.
    pub fn with_mode(n: usize, mode: LanMode) -> Lan {
        match mode {
            LanMode::Namespaces => Lan::on_namespaces(
                Namespaces::make(n)
                    .unwrap_or_else(|why| panic!("lan: cannot make network namespaces: {why}")),
            ),
            LanMode::Loopback => Lan::on_loopback(n),
        }
    }

    fn on_namespaces(namespaces: Namespaces) -> Lan {
        let addresses = namespaces.addresses.clone();
        eprintln!(
            "lan: {} workstations in network namespaces {}0..{} joined by {BRIDGE} in {}, \
             addresses {}..{}",
            addresses.len(),
            namespaces.workstation_base,
            addresses.len() - 1,
            namespaces.hub,
            addresses[0],
            addresses[addresses.len() - 1],
        );
        Lan {
            mode: LanMode::Namespaces,
            addresses,
            namespaces: Some(namespaces),
            relays: None,
        }
    }

    fn on_loopback(n: usize) -> Lan {
        assert!((1..=200).contains(&n), "lan: {n} workstations (1 to 200)");
        // Workstation i is 127.0.0.(2+i): 2 + 199 = 201 at most, inside 127.0.0.0/8.
        let addresses: Vec<Ipv4Addr> = (0..n)
            .map(|i| Ipv4Addr::new(127, 0, 0, u8::try_from(2 + i).unwrap()))
            .collect();
        eprintln!(
            "lan: {n} workstations on loopback addresses {}..{}, links through relays",
            addresses[0],
            addresses[n - 1]
        );
        Lan {
            mode: LanMode::Loopback,
            relays: Some(relay::Relays::new(addresses.clone())),
            addresses,
            namespaces: None,
        }
    }

    /// How this LAN was made.
    pub fn mode(&self) -> LanMode {
        self.mode
    }

    /// The number of workstations.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Workstation `i`'s address: where its services listen (`10.213.K.(i+1)` inside its
    /// namespace, or `127.0.0.(2+i)`). Others reach them through [`Lan::route`].
    pub fn address(&self, i: usize) -> IpAddr {
        IpAddr::V4(self.addresses[i])
    }

    /// Workstation `i`'s network namespace, `None` on loopback.
    pub fn namespace(&self, i: usize) -> Option<&str> {
        self.namespaces
            .as_ref()
            .map(|ns| ns.workstations[i].as_str())
    }

    /// Every namespace this LAN made (the workstations', then the hub), none on loopback.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.as_ref().map_or_else(Vec::new, |ns| {
            let mut all = ns.workstations.clone();
            all.push(ns.hub.clone());
            all
        })
    }

    /// The command prefix that runs a program inside workstation `i` (`ip netns exec NS`;
    /// empty on loopback), for [`super::command_in`] and the `*_in` starters of `common`.
    pub fn prefix(&self, i: usize) -> Vec<OsString> {
        match self.namespace(i) {
            Some(ns) => ["ip", "netns", "exec", ns].map(OsString::from).to_vec(),
            None => Vec::new(),
        }
    }

    /// A command running `program` inside workstation `i`.
    pub fn command(&self, i: usize, program: impl AsRef<OsStr>) -> Command {
        super::command_in(&self.prefix(i), program)
    }

    /// Where workstation `from` reaches `port` of workstation `to`: `to`'s address in
    /// namespaces; on loopback, a relay of this link (made on the first call, the same one
    /// after), which [`Lan::cut`] of either end closes.
    pub fn route(&self, from: usize, to: usize, port: u16) -> SocketAddr {
        assert!(
            from < self.len() && to < self.len(),
            "lan: no workstation {from} or {to}"
        );
        match &self.relays {
            Some(relays) => relays.route(from, to, port),
            None => SocketAddr::new(self.address(to), port),
        }
    }

    /// A port number for a service of workstation `i` to listen on, handed out by the system
    /// (no fixed port): on loopback one free on `i`'s address, released at once (take it
    /// before anything else runs); in namespaces any port of the workstation's own port space
    /// is free, and the number is one the system hands out on the test's loopback.
    pub fn listen_port(&self, i: usize) -> u16 {
        let ip = match self.mode {
            LanMode::Loopback => self.address(i),
            LanMode::Namespaces => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let listener = std::net::TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("lan: no free port on {ip}: {e}"));
        listener.local_addr().unwrap().port()
    }

    /// Whether a TCP connection from workstation `from` to `port` of workstation `to` (through
    /// [`Lan::route`]) is taken within `wait`, tried once by a probe inside `from`: `Err` says
    /// why not (`timeout …`, `refused …`, `unreachable …`).
    pub fn connects(
        &self,
        from: usize,
        to: usize,
        port: u16,
        wait: Duration,
    ) -> Result<(), String> {
        let to = self.route(from, to, port);
        self.probe_client(from).connect(to, wait)
    }

    /// Cuts workstation `i` off the LAN; returns once the cut holds (its interface is down,
    /// or its relays closed and refusing).
    pub fn cut(&self, i: usize) {
        if let Some(ns) = &self.namespaces {
            ns.set_link(i, false)
                .unwrap_or_else(|why| panic!("lan: cut of workstation {i}: {why}"));
        }
        if let Some(relays) = &self.relays {
            relays.cut(i);
        }
    }

    /// Puts workstation `i` back on the LAN; returns once its link is up again (interface up
    /// and forwarding on the bridge, its route back; or its relays listening).
    pub fn restore(&self, i: usize) {
        if let Some(ns) = &self.namespaces {
            ns.set_link(i, true)
                .unwrap_or_else(|why| panic!("lan: restore of workstation {i}: {why}"));
        }
        if let Some(relays) = &self.relays {
            relays.restore(i);
        }
    }

    /// Starts fsed inside workstation `i` ([`super::start_fsed_virtual_in`]): its state, its
    /// API socket and its `slots` virtual reader slots in `dir`, `config` as its configuration
    /// file, these extra flags; returns it, ready, and a client on its Unix socket.
    pub fn start_fsed(
        &self,
        i: usize,
        dir: &Path,
        slots: usize,
        config: &str,
        extra: &[&str],
    ) -> (Proc, Rpc) {
        super::start_fsed_virtual_in(&self.prefix(i), dir, slots, config, extra)
    }

    /// Starts the card simulator inside workstation `i` on the reader of the fsed started in
    /// the same `dir` ([`super::start_fast_cards_on_in`]: the CPS in slot 0, the Vitale card
    /// in slot 1); returns it and its control socket.
    pub fn start_cards(&self, i: usize, dir: &Path, extra: &[&str]) -> (Proc, PathBuf) {
        super::start_fast_cards_on_in(&self.prefix(i), dir, extra)
    }

    /// Starts `lan-probe listen` inside workstation `i` on its address; returns it and the
    /// port it listens on (echoing lines back).
    pub fn probe_listener(&self, i: usize) -> (Proc, u16) {
        let ip = self.address(i).to_string();
        let mut listener = Proc::start_in(&self.prefix(i), "lan-probe", &["listen", &ip]);
        let line = listener.wait_line("listening ", LINK_WAIT);
        let port = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("lan-probe printed {line:?}"));
        (listener, port)
    }

    /// Starts `lan-probe client` inside workstation `i`.
    pub fn probe_client(&self, i: usize) -> Probe {
        let mut child = self
            .command(i, super::bin("lan-probe"))
            .arg("client")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start lan-probe in workstation {i}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Probe {
            child,
            stdin,
            lines,
        }
    }
}

/// A `lan-probe client` inside a workstation: one TCP connection at a time, each order
/// bounded by its own wait. Killed on drop.
pub struct Probe {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Probe {
    /// Opens a connection to `addr` (replacing the one before), waiting at most `wait`. The
    /// error is the probe's `KIND DETAIL` (`timeout …`, `refused …`, `unreachable …`).
    pub fn connect(&mut self, addr: SocketAddr, wait: Duration) -> Result<(), String> {
        self.order(&format!("connect {} {addr}", wait.as_millis()), wait)
            .map(drop)
    }

    /// Sends `text` (one word, no newline) on the connection and waits at most `wait` for the
    /// listener's echo. The error is the probe's `KIND DETAIL` (`timeout …`, `eof`, `reset …`).
    pub fn echo(&mut self, text: &str, wait: Duration) -> Result<(), String> {
        let answer = self.order(&format!("echo {} {text}", wait.as_millis()), wait)?;
        assert_eq!(answer, format!("echoed {text}"), "lan-probe's answer");
        Ok(())
    }

    /// Sends one order; its answer line, `Err` with what follows `failed `.
    fn order(&mut self, order: &str, wait: Duration) -> Result<String, String> {
        writeln!(self.stdin, "{order}").expect("lan-probe takes orders");
        self.stdin.flush().expect("lan-probe takes orders");
        let answer = self
            .lines
            .recv_timeout(wait + PROBE_MARGIN)
            .unwrap_or_else(|_| {
                panic!(
                    "lan-probe did not answer {order:?} (exit: {:?})",
                    self.child.try_wait()
                )
            });
        match answer.strip_prefix("failed ") {
            Some(why) => Err(why.to_string()),
            None => Ok(answer),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The namespaces of a LAN: what was made, removed on drop.
struct Namespaces {
    hub: String,
    /// `fsedlan-PID-SEQ-ws`: workstation `i` is this followed by `i`.
    workstation_base: String,
    workstations: Vec<String>,
    addresses: Vec<Ipv4Addr>,
    /// The namespaces added so far, in order: the ones drop deletes.
    made: Vec<String>,
}

impl Namespaces {
    /// Removes what dead runs left, then makes the hub, its bridge, and `n` workstations.
    fn make(n: usize) -> Result<Namespaces, String> {
        assert!((1..=200).contains(&n), "lan: {n} workstations (1 to 200)");
        remove_stale()?;
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("{NAME_PREFIX}{pid}-{seq}");
        // K in 1..=254: a subnet of its own per run (and per LAN of a run), though namespaces
        // never see each other's anyway.
        let k = u8::try_from((pid as usize + seq) % 254 + 1).unwrap();
        let workstation_base = format!("{base}-ws");
        let mut ns = Namespaces {
            hub: format!("{base}-hub"),
            workstations: (0..n).map(|i| format!("{workstation_base}{i}")).collect(),
            workstation_base,
            // Workstation i is host i+1 of 10.213.K.0/24: 1..=200.
            addresses: (0..n)
                .map(|i| Ipv4Addr::new(10, 213, k, u8::try_from(i + 1).unwrap()))
                .collect(),
            made: Vec::new(),
        };
        // On failure, `ns` is dropped here and deletes what was made.
        ns.build()?;
        Ok(ns)
    }

    fn build(&mut self) -> Result<(), String> {
        let hub = self.hub.clone();
        self.add(&hub)?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", BRIDGE, "up"])?;
        for i in 0..self.workstations.len() {
            let ws = self.workstations[i].clone();
            let port = hub_port(i);
            let address = format!("{}/24", self.addresses[i]);
            self.add(&ws)?;
            ip(&["-n", &ws, "link", "set", "lo", "up"])?;
            // Both ends are made inside the hub, the workstation's moved straight into its own
            // namespace: the root namespace never holds either.
            ip(&[
                "-n",
                &hub,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                LAN_INTERFACE,
                "netns",
                &ws,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", BRIDGE])?;
            ip(&["-n", &hub, "link", "set", &port, "up"])?;
            ip(&["-n", &ws, "addr", "add", &address, "dev", LAN_INTERFACE])?;
        }
        for i in 0..self.workstations.len() {
            self.set_link(i, true)?;
        }
        Ok(())
    }

    /// `ip netns add`, remembered for drop.
    fn add(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.made.push(name.to_string());
        Ok(())
    }

    /// Sets workstation `i`'s interface up or down and waits until the link is so: down, its
    /// interface says `state DOWN`; up, its interface says `state UP`, the hub's end of it
    /// forwards on the bridge and its route to the LAN is back.
    fn set_link(&self, i: usize, up: bool) -> Result<(), String> {
        let ws = &self.workstations[i];
        let port = hub_port(i);
        ip(&[
            "-n",
            ws,
            "link",
            "set",
            LAN_INTERFACE,
            if up { "up" } else { "down" },
        ])?;
        let what = format!("{ws}'s {LAN_INTERFACE} {}", if up { "up" } else { "down" });
        poll(&what, LINK_WAIT, || {
            let ours = ip(&["-n", ws, "-o", "link", "show", "dev", LAN_INTERFACE])?;
            if !up {
                return Ok(ours.contains(" state DOWN "));
            }
            Ok(ours.contains(" state UP ")
                && ip(&["-n", &self.hub, "-d", "-o", "link", "show", "dev", &port])?
                    .contains("bridge_slave state forwarding ")
                && !ip(&["-n", ws, "-o", "route", "show", "dev", LAN_INTERFACE])?
                    .trim()
                    .is_empty())
        })
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            remove_namespace(name);
        }
    }
}

/// The hub's end of workstation `i`'s link.
fn hub_port(i: usize) -> String {
    format!("ws{i}")
}

/// Runs `ip ARGS`; its stdout, or what went wrong.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {} ({})",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        ))
    }
}

/// Kills what still runs inside namespace `name`, then deletes it (its interfaces go with
/// it). Best effort: what fails is said on stderr.
fn remove_namespace(name: &str) {
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    if let Err(why) = ip(&["netns", "delete", name]) {
        eprintln!("lan: {why}");
    }
}

/// Removes the namespaces of runs whose process is no longer alive (a run killed before its
/// drop); the live runs', this one's included, are left alone.
fn remove_stale() -> Result<(), String> {
    let list = ip(&["netns", "list"])?;
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("lan: removing {name}, left by a run that is gone");
            remove_namespace(name);
        }
    }
    Ok(())
}

/// Polls `f` every 20 ms until it says yes, at most `timeout`.
fn poll(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let end = Instant::now() + timeout;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!("{what}: not within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
