//! `fsed`: the service that reads the CPS and the Vitale card, builds care
//! sheets, keeps them in the durable queue, has them signed in lots and
//! transmits them to the insurers, then records their acknowledgements.
//!
//! Module map: [`config`] (settings), [`cards`] (the one card thread),
//! [`api`] (JSON-RPC on the Unix socket), [`context`] (what its handlers,
//! billing and the doctor share), [`json`] (JSON text fsed made itself),
//! [`access`] (who may connect to it), [`net`] (the network API over mutual TLS, the
//! practice CA, enrollment, workstation rights), [`caller`] (the client behind a request), [`billing`] (one sheet from the cards
//! and the rules), [`store`] (the queue behind an async handle),
//! [`batcher`] (lots closed, signed, sent), [`transport`] (AMQP or spool),
//! [`returns`] (ARLs applied), [`paper`] (the paper duplicate of a sheet, as a PDF), [`events`] (the event bus), [`logging`]
//! (repeated warnings bounded), [`doctor`]
//! (self-diagnosis), [`service`] (wiring, reload and shutdown), [`systemd`]
//! (notifications, watchdog, socket activation), [`shutdown`] (the stop
//! signal every task listens to).

pub mod access;
pub mod api;
pub mod batcher;
pub mod billing;
pub mod caller;
pub mod cards;
pub mod config;
pub mod context;
pub mod doctor;
pub mod error;
pub mod events;
pub mod json;
pub mod logging;
pub mod mark;
pub mod net;
pub mod paper;
pub mod presence;
pub mod remote;
pub mod retention;
pub mod returns;
pub mod rights;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod systemd;
pub mod transport;
