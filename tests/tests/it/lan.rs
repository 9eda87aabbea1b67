//! The LAN harness of the network tests (`common::netns`) checked on itself, in both of its
//! modes: a workstation reaches another, a cut stops that both for an open connection and for
//! a new one, a restore brings it back, and nothing is left behind. Plus fsed and its cards
//! inside a workstation, and the removal of what a dead run left.
//!
//! The probes are `lan-probe` processes inside the workstations. A wait that must fail is
//! bounded by [`FAIL_WAIT`] (across a cut nothing can succeed, however loaded the machine);
//! a wait that must succeed by [`OK_WAIT`], generous for a loaded machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use crate::common::{
    self,
    netns::{Lan, LanMode, LAN_INTERFACE},
};

// A Lan is shared by the threads of a scenario (programs on several workstations at once).
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Lan>();
};

/// The bound of an exchange that must fail: long enough for any answer that would come on a
/// live link, short enough to keep the test quick.
const FAIL_WAIT: Duration = Duration::from_secs(3);

/// The bound of an exchange that must succeed.
const OK_WAIT: Duration = Duration::from_secs(30);

/// `ip ARGS`'s stdout, failing the test when `ip` fails.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The names `ip netns list` shows.
fn namespaces_listed() -> Vec<String> {
    ip(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Workstation 0 reaches a listener in workstation 1; after `cut(1)` neither the open
/// connection nor a new one gets through; after `restore(1)` a new one does. Returns the LAN,
/// still up, for the mode's own checks.
fn connect_cut_restore(mode: LanMode) -> Lan {
    let lan = Lan::with_mode(2, mode);
    assert_eq!(lan.mode(), mode);
    let (_listener, port) = lan.probe_listener(1);
    let to = lan.route(0, 1, port);
    let mut probe = lan.probe_client(0);
    probe.connect(to, OK_WAIT).expect("0 connects to 1");
    probe.echo("before", OK_WAIT).expect("0 exchanges with 1");

    lan.cut(1);
    let open = probe
        .echo("during", FAIL_WAIT)
        .expect_err("an open connection carries nothing across a cut");
    let new = probe
        .connect(to, FAIL_WAIT)
        .expect_err("no new connection across a cut");
    eprintln!("lan {mode:?}, cut: open connection: {open}; new connection: {new}");
    match mode {
        // The cable is out: nothing answers, the waits run out (or ARP gives up first).
        LanMode::Namespaces => {
            assert!(open.starts_with("timeout"), "open connection: {open}");
            assert!(
                new.starts_with("timeout") || new.starts_with("unreachable"),
                "new connection: {new}"
            );
        }
        // The relay closed the connection and refuses new ones.
        LanMode::Loopback => {
            assert!(
                open.starts_with("eof") || open.starts_with("reset"),
                "open connection: {open}"
            );
            assert!(new.starts_with("refused"), "new connection: {new}");
        }
    }

    lan.restore(1);
    assert_eq!(
        lan.connects(0, 1, port, OK_WAIT),
        Ok(()),
        "after the restore"
    );
    probe
        .connect(to, OK_WAIT)
        .expect("0 connects to 1 again after the restore");
    probe
        .echo("after", OK_WAIT)
        .expect("0 exchanges with 1 again");
    // The same route, asked again, is the same address.
    assert_eq!(lan.route(0, 1, port), to);
    lan
}

#[test]
fn namespaces_lan_connects_cuts_restores_and_goes_away() {
    let lan = connect_cut_restore(LanMode::Namespaces);
    let names = lan.namespaces();
    // Two workstations and the hub.
    assert_eq!(names.len(), 3, "{names:?}");
    let listed = namespaces_listed();
    for name in &names {
        assert!(listed.contains(name), "{name} not in {listed:?}");
    }
    // The addresses exist inside the workstations only: not in the root namespace.
    let root = ip(&["-o", "addr", "show"]);
    for i in 0..lan.len() {
        let IpAddr::V4(address) = lan.address(i) else {
            panic!("IPv4 expected")
        };
        assert_eq!(address.octets()[..2], [10, 213], "private range");
        let inside = ip(&["-n", lan.namespace(i).unwrap(), "-o", "addr", "show"]);
        let needle = format!("inet {address}/24");
        assert!(
            inside.contains(&needle) && inside.contains(LAN_INTERFACE),
            "{inside}"
        );
        assert!(!root.contains(&needle), "root namespace has {needle}");
    }
    // A workstation has a loopback of its own: a listener of the root namespace's loopback is
    // not there.
    let root_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut probe = lan.probe_client(0);
    let outside = probe
        .connect(root_listener.local_addr().unwrap(), FAIL_WAIT)
        .expect_err("the root namespace's loopback is out of a workstation's reach");
    assert!(outside.starts_with("refused"), "{outside}");
    drop(probe);

    drop(lan);
    let listed = namespaces_listed();
    for name in &names {
        assert!(!listed.contains(name), "{name} left after drop: {listed:?}");
    }
}

#[test]
fn loopback_lan_connects_cuts_restores_and_goes_away() {
    let lan = connect_cut_restore(LanMode::Loopback);
    assert!(lan.namespaces().is_empty());
    // Workstation i is 127.0.0.(2+i): 0 → .2, 1 → .3.
    assert_eq!(lan.address(0), IpAddr::from([127, 0, 0, 2]));
    assert_eq!(lan.address(1), IpAddr::from([127, 0, 0, 3]));
    // A cut of the connecting end closes its links too, and a restore brings them back.
    let (_listener, port) = lan.probe_listener(1);
    let to = lan.route(0, 1, port);
    let mut probe = lan.probe_client(0);
    probe.connect(to, OK_WAIT).expect("0 connects to 1");
    lan.cut(0);
    probe
        .echo("during", FAIL_WAIT)
        .expect_err("a cut of the connecting end closes its connection");
    lan.restore(0);
    probe.connect(to, OK_WAIT).expect("0 connects again");
    probe.echo("after", OK_WAIT).expect("0 exchanges again");

    drop(lan);
    // Every relay is closed with the LAN.
    let gone = std::net::TcpStream::connect_timeout(&to, FAIL_WAIT)
        .expect_err("the relay is gone with the LAN");
    assert_eq!(gone.kind(), std::io::ErrorKind::ConnectionRefused, "{gone}");
}

/// Whether process `pid` is in the test's own network namespace.
fn in_own_namespace(pid: u32) -> bool {
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap() == own
}

/// fsed and its simulated cards started inside a workstation (in the mode `FSED_TEST_LAN` or
/// the machine chooses): fsed is ready, lists both cards (the card simulator reaches its reader
/// slots, the test its API socket: Unix sockets in its folder), and runs in the namespace.
#[test]
fn fsed_runs_inside_a_workstation_with_its_cards() {
    let lan = Lan::new(2);
    let dir = tempfile::tempdir().unwrap();
    let (fsed, mut rpc) = lan.start_fsed(1, dir.path(), 2, "", &[]);
    let (_cards, _control) = lan.start_cards(1, dir.path(), &[]);
    common::wait_cards(&mut rpc, 2);
    let kinds: Vec<String> = common::serials(&mut rpc)
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert!(
        kinds.contains(&"cps".to_string()) && kinds.contains(&"vitale".to_string()),
        "{kinds:?}"
    );
    let own = in_own_namespace(fsed.child.id());
    match lan.mode() {
        LanMode::Namespaces => assert!(!own, "fsed runs in the test's namespace"),
        LanMode::Loopback => assert!(own, "fsed runs elsewhere on loopback"),
    }
    if let Some(ns) = lan.namespace(1) {
        let pids = ip(&["netns", "pids", ns]);
        let fsed_pid = fsed.child.id().to_string();
        assert!(
            pids.split_whitespace().any(|p| p == fsed_pid),
            "fsed {fsed_pid} not among {ns}'s processes: {pids}"
        );
    }
}

/// A namespace named for a run whose process is gone is removed when the next LAN is made,
/// with what that run left running inside it; a live run's is kept.
#[test]
fn namespaces_of_a_dead_run_are_removed() {
    // A pid that was alive and is no longer: a child that ran and was waited for.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let stale = format!("fsedlan-{}-0-hub", gone.id());
    ip(&["netns", "add", &stale]);
    assert!(namespaces_listed().contains(&stale));
    // What the dead run left running inside: a listener, as an fsed would be.
    let mut left = common::Proc::start_in(
        &["ip", "netns", "exec", &stale].map(std::ffi::OsString::from),
        "lan-probe",
        &["listen", "127.0.0.1"],
    );
    left.wait_line("listening ", OK_WAIT);

    let lan = Lan::with_mode(1, LanMode::Namespaces);
    let listed = namespaces_listed();
    assert!(!listed.contains(&stale), "{stale} still there: {listed:?}");
    for name in lan.namespaces() {
        assert!(listed.contains(&name), "{name} not in {listed:?}");
    }
    let status = common::wait_for("the stale run's process to end", OK_WAIT, || {
        left.child.try_wait().unwrap()
    });
    assert!(!status.success(), "killed, not ended by itself: {status}");
}

/// Each workstation reaches every other (three, as in the practice scenarios), each through
/// its own route; a cut of one leaves the other two talking.
#[test]
fn three_workstations_reach_each_other_and_a_cut_isolates_one() {
    let lan = Lan::new(3);
    let listeners: Vec<_> = (0..3).map(|i| lan.probe_listener(i)).collect();
    let mut probes: Vec<_> = (0..3).map(|i| lan.probe_client(i)).collect();
    let route = |from: usize, to: usize| -> SocketAddr { lan.route(from, to, listeners[to].1) };
    for (from, probe) in probes.iter_mut().enumerate() {
        for to in (0..3).filter(|&to| to != from) {
            probe
                .connect(route(from, to), OK_WAIT)
                .unwrap_or_else(|e| panic!("{from} → {to}: {e}"));
            probe
                .echo("hello", OK_WAIT)
                .unwrap_or_else(|e| panic!("{from} → {to}: {e}"));
        }
    }
    lan.cut(2);
    probes[0]
        .connect(route(0, 1), OK_WAIT)
        .expect("0 → 1 while 2 is cut");
    probes[0]
        .echo("still", OK_WAIT)
        .expect("0 → 1 while 2 is cut");
    for (from, to) in [(0, 2), (2, 1)] {
        probes[from]
            .connect(route(from, to), FAIL_WAIT)
            .expect_err("no way across the cut");
        assert!(lan.connects(from, to, listeners[to].1, FAIL_WAIT).is_err());
    }
    lan.restore(2);
    probes[2]
        .connect(route(2, 0), OK_WAIT)
        .expect("2 → 0 after the restore");
    probes[2]
        .echo("back", OK_WAIT)
        .expect("2 → 0 after the restore");
}
