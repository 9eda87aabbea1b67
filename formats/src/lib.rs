//! `fse_formats`: every format both sides of a wire must agree on — card
//! APDUs and files, identifiers and their keys, care sheets, lots and
//! acknowledgements in DER, pricing rules, the local API's JSON types.
//!
//! This crate does no I/O: the card simulator, the daemon and the insurer
//! simulator agree with each other by sharing it.

pub mod ack;
pub mod apdu;
pub mod api;
pub mod app;
pub mod attachment;
pub mod build;
pub mod calendar;
pub mod cards;
pub mod care;
pub mod channel;
pub mod cms;
pub mod der;
pub mod dre;
pub mod dre_lot;
pub mod fse;
pub mod ids;
pub mod late_payment;
pub mod lot;
pub mod merkle;
pub mod pki;
pub mod rights;
pub mod rules;
pub mod text;
pub mod tlv;
pub mod transcript;
pub mod verify;
pub mod vpcd;
pub mod wire;

#[cfg(test)]
mod canonical_tests;
