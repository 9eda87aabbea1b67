//! The commands, a module per group; each takes the connected client and `--json`.

mod cards;
mod events;
mod fse;
mod lots;
mod network;
mod payments;
mod system;
mod transmit;

pub(crate) use cards::{cards, vitale};
pub(crate) use events::events;
pub(crate) use fse::fse;
pub(crate) use lots::{lots, queue, returns};
pub(crate) use network::{connect_remote, enroll, workstations};
pub(crate) use payments::{payments, sheet_status, PaymentsArgs};
pub(crate) use system::{backup, doctor_or_offline, offline_doctor, status, verify, version};
pub(crate) use transmit::transmit;
