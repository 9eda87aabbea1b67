//! The end-to-end tests, one test binary (`it`): every file of this folder is a module of it,
//! so `common` and the workspace's crates are compiled once for all of them.
//!
//! Two tiers, chosen at compile time by the `full` feature of `fsed_tests`:
//!
//! - Fast tier (plain `cargo test --workspace`): the modules and tests that need no system
//!   service nor tool outside the workspace's own binaries: fsed on its embedded virtual reader
//!   (Unix socket slots in each test's own directory), the spool transport, SQLite.
//! - Full tier (`--features fsed_tests/full`, which `tests/run` passes): everything, including
//!   the tests over pcscd + vpcd, RabbitMQ, systemd's tools, `openssl`, GnuTLS `certtool`,
//!   `scriptor` and Python asn1tools. Those are gated by `#[cfg(feature = "full")]`, so the fast
//!   tier does not even list them; under the full tier a missing service makes its tests fail,
//!   never skip. The long load tests are of the full tier too (`socket_fuzz`'s million lines,
//!   `inputs`' hundred thousand returns: minutes each), so that the fast tier stays short: its
//!   longest module is `scenarios`, the whole catalogue, under a minute on two cores.
//!
//! Tests of one binary run on parallel threads. The shared services (pcscd with the vpcd
//! driver's two fixed slots, and the broker, which `broker_outage` stops) are taken in turn
//! through [`common::shared_services`]; everything else a test uses is its own (a temporary
//! directory, Unix sockets in it, broker names made unique).
//!
//! Tests of several fseds on a LAN make their own workstations with [`common::netns::Lan`]
//! (network namespaces, or loopback addresses where namespaces cannot be made;
//! `FSED_TEST_LAN=loopback` forces the latter), so they need no turn either.

mod common;

#[cfg(feature = "full")]
mod amqp_transport;
mod api_conformance;
#[cfg(feature = "full")]
mod asn1_independent;
mod attachments;
#[cfg(feature = "full")]
mod broker_outage;
#[cfg(feature = "full")]
mod cards_control;
#[cfg(feature = "full")]
mod cards_pcscd;
#[cfg(feature = "full")]
mod cluster;
#[cfg(feature = "full")]
mod crash;
mod damage;
mod demo;
#[cfg(feature = "full")]
mod dre;
mod durability;
#[cfg(feature = "full")]
mod e2e;
#[cfg(feature = "full")]
mod fsectl;
mod golden;
#[cfg(feature = "full")]
mod input_rules;
mod inputs;
#[cfg(feature = "full")]
mod lan;
#[cfg(feature = "full")]
mod lost_arl;
#[cfg(feature = "full")]
mod lots;
#[cfg(feature = "full")]
mod network;
mod paper;
mod payments;
#[cfg(feature = "full")]
mod pcscd_life;
#[cfg(feature = "full")]
mod pki;
#[cfg(feature = "full")]
mod practice_lan;
#[cfg(feature = "full")]
mod remote;
mod replay;
#[cfg(feature = "full")]
mod returns;
#[cfg(feature = "full")]
mod returns_forged;
mod rights_online;
mod scenarios;
mod service;
#[cfg(feature = "full")]
mod sharing;
#[cfg(feature = "full")]
mod socket_fuzz;
#[cfg(feature = "full")]
mod transport;
#[cfg(feature = "full")]
mod validation_api;
mod vitale_app;
