//! Virtual smart cards: a CPS and a Vitale card answering ISO 7816-4
//! command APDUs with the files and commands of `fse_formats::cards`
//! (documented in `formats/CARDS.md`). Private keys exist only here.
//!
//! Layout: `common.rs` holds what both cards share (file system, SELECT and READ BINARY, the
//! signing key), `cps.rs` the CPS (PIN, PUK, signature), `vitale.rs` the Vitale card
//! (proof of presence); the foreign card and the in-process link are here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fse_formats::apdu::{self, Command, Response};

mod common;
mod cps;
#[cfg(test)]
mod tests;
mod vitale;

pub use cps::VirtualCps;
pub use vitale::VirtualVitale;

/// ATR of the simulated CPS: `3B 88 80 01 46 53 45 44 2D 43 50 53 70`
/// (T=1, historical bytes "FSED-CPS", then TCK, the XOR of T0..last historical byte).
pub const ATR_CPS: &[u8] = &[
    0x3B, 0x88, 0x80, 0x01, b'F', b'S', b'E', b'D', b'-', b'C', b'P', b'S', 0x70,
];
/// ATR of the simulated Vitale card: `3B 88 80 01 46 53 45 44 2D 56 49 54 7B`
/// (T=1, historical bytes "FSED-VIT", then TCK).
pub const ATR_VITALE: &[u8] = &[
    0x3B, 0x88, 0x80, 0x01, b'F', b'S', b'E', b'D', b'-', b'V', b'I', b'T', 0x7B,
];
/// PIN tries of a fresh CPS.
pub const PIN_TRIES: u8 = 3;
/// PUK tries of a fresh CPS.
pub const PUK_TRIES: u8 = 10;

/// Operation counters of one card, shared with tests and the demo.
#[derive(Debug, Default)]
pub struct CardStats {
    /// Command APDUs processed.
    pub apdus: AtomicU64,
    /// Command APDUs received, counted before the card's time to answer them: one more than
    /// `apdus` while the card works on one (a test can act in the middle of an operation).
    pub received: AtomicU64,
    /// VERIFY commands with a PIN.
    pub verifies: AtomicU64,
    /// Signatures made (PSO: COMPUTE DIGITAL SIGNATURE).
    pub signatures: AtomicU64,
    /// INTERNAL AUTHENTICATE answers.
    pub authentications: AtomicU64,
}

impl CardStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A card the simulator can show in a reader.
pub trait VirtualCard: Send {
    /// Answer to reset.
    fn atr(&self) -> Vec<u8>;
    /// Processes one command APDU, returns the response APDU bytes.
    fn process(&mut self, apdu: &[u8]) -> Vec<u8>;
    /// Warm reset: security state and selection are cleared.
    fn reset(&mut self);
    /// A command APDU arrived; the card is about to work on it (counted in
    /// [`CardStats::received`] by the cards that keep counters).
    fn received(&mut self) {}
}

/// A card with neither application: every SELECT by AID answers `6A82`, other instructions `6D00`.
pub struct ForeignCard {
    atr: Vec<u8>,
    stats: Arc<CardStats>,
}

impl ForeignCard {
    /// A foreign card with this ATR.
    pub fn new(atr: Vec<u8>) -> ForeignCard {
        ForeignCard {
            atr,
            stats: Arc::default(),
        }
    }

    /// The card's counters.
    pub fn stats(&self) -> Arc<CardStats> {
        Arc::clone(&self.stats)
    }
}

impl VirtualCard for ForeignCard {
    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }

    fn process(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.stats.apdus.fetch_add(1, Ordering::Relaxed);
        let sw = match Command::parse(bytes) {
            Err(_) => apdu::SW_WRONG_LENGTH,
            Ok(cmd) if cmd.ins == apdu::INS_SELECT => apdu::SW_FILE_NOT_FOUND,
            Ok(_) => apdu::SW_INS_NOT_SUPPORTED,
        };
        Response::status(sw).to_bytes()
    }

    fn reset(&mut self) {}
}

/// An in-process link to a virtual card, for tests of one layer.
pub struct InProcess<'a>(pub &'a mut dyn VirtualCard);

impl fse_formats::channel::CardChannel for InProcess<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, fse_formats::channel::ChannelError> {
        Ok(self.0.process(command))
    }
}

#[cfg(test)]
mod transcript_tests {
    use fse_formats::cards::{self, Pin};
    use fse_formats::transcript::{Recorder, Replay};

    use super::*;
    use crate::profiles;

    #[test]
    fn a_recorded_session_replays_without_the_card_and_hides_the_pin() {
        let mut cps = profiles::default_cps();
        let mut rec = Recorder::new(InProcess(&mut cps));
        cards::verify_pin(&mut rec, &Pin::new(profiles::DEFAULT_PIN).unwrap()).unwrap();
        let data = cards::read_cps(&mut rec).unwrap();
        let text = rec.transcript().to_string();
        let verify = text.lines().find(|l| l.starts_with("> 00 20")).unwrap();
        assert_eq!(
            verify, "> 00 20 00 81 08 ** ** ** ** ** ** ** **",
            "the PIN must not be in a transcript"
        );
        let mut replay = Replay::parse(&text).unwrap();
        cards::verify_pin(&mut replay, &Pin::new("9876").unwrap()).unwrap();
        assert_eq!(cards::read_cps(&mut replay).unwrap(), data);
        assert!(replay.finished());
    }
}
