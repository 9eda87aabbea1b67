//! The simulated CPS: its files, PIN and PUK counters, and its signature (PSO: COMPUTE
//! DIGITAL SIGNATURE).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use fse_formats::apdu::{self, Command, Response};
use fse_formats::cards::{self, CpsHolder, Pin, Puk, Situation};

use super::common::{wrong_le_for_signature, CardKey, FileSystem};
use super::{CardStats, VirtualCard, ATR_CPS, PIN_TRIES, PUK_TRIES};

/// A simulated CPS.
pub struct VirtualCps {
    fs: FileSystem,
    key: CardKey,
    pin: Pin,
    tries_left: u8,
    puk: Option<Puk>,
    puk_tries_left: u8,
    verified: bool,
    stats: Arc<CardStats>,
}

impl VirtualCps {
    /// A CPS for `holder` with its situations, PIN and signing key.
    pub fn new(
        holder: &CpsHolder,
        situations: &[Situation],
        pin: Pin,
        key: SigningKey,
    ) -> VirtualCps {
        let mut fs = FileSystem::new(cards::AID_CPS);
        fs.files
            .insert(cards::EF_CPS_HOLDER, cards::encode_cps_holder(holder));
        for (i, s) in situations.iter().take(cards::MAX_SITUATIONS).enumerate() {
            fs.files.insert(
                cards::EF_CPS_SITUATION_BASE + i as u16,
                cards::encode_situation(s),
            );
        }
        fs.files.insert(
            cards::EF_CPS_KEY,
            cards::encode_key(&key.verifying_key().to_bytes()),
        );
        VirtualCps {
            fs,
            key: CardKey::new(key),
            pin,
            tries_left: PIN_TRIES,
            puk: None,
            puk_tries_left: PUK_TRIES,
            verified: false,
            stats: Arc::default(),
        }
    }

    /// Gives the card an unblocking code (without one, RESET RETRY COUNTER is refused).
    pub fn with_puk(mut self, puk: Puk) -> VirtualCps {
        self.puk = Some(puk);
        self
    }

    /// The card's counters.
    pub fn stats(&self) -> Arc<CardStats> {
        Arc::clone(&self.stats)
    }

    /// Gives the card its X.509 certificate (file `D102`).
    pub fn with_certificate(mut self, der: Vec<u8>) -> VirtualCps {
        self.fs.files.insert(cards::EF_CPS_CERT, der);
        self
    }

    /// Sets the PIN tries left (0 blocks the PIN), for scripted situations.
    pub fn set_tries_left(&mut self, tries: u8) {
        self.tries_left = tries.min(PIN_TRIES);
    }

    fn verify(&mut self, cmd: &Command) -> Response {
        if (cmd.p1, cmd.p2) == (0xFF, cards::PIN_REF) && cmd.data.is_empty() {
            // ISO/IEC 7816-4: reset the verification status; no try spent.
            self.verified = false;
            return Response::status(apdu::SW_OK);
        }
        if cmd.p1 != 0x00 || cmd.p2 != cards::PIN_REF {
            return Response::status(apdu::SW_WRONG_P1P2);
        }
        if self.tries_left == 0 {
            return Response::status(apdu::SW_AUTH_BLOCKED);
        }
        if cmd.data.is_empty() {
            return Response::status(if self.verified {
                apdu::SW_OK
            } else {
                apdu::sw_tries_left(self.tries_left)
            });
        }
        if cmd.data.len() != 8 {
            return Response::status(apdu::SW_WRONG_LENGTH);
        }
        self.stats.verifies.fetch_add(1, Ordering::Relaxed);
        self.present_pin(&cmd.data)
            .unwrap_or_else(|refused| refused)
    }

    /// Checks a PIN block, spending a try when wrong: `Ok(9000)` or `Err(63Cx)`.
    fn present_pin(&mut self, block: &[u8]) -> Result<Response, Response> {
        if self.pin.matches_block(block) {
            self.tries_left = PIN_TRIES;
            self.verified = true;
            Ok(Response::status(apdu::SW_OK))
        } else {
            self.tries_left -= 1;
            self.verified = false;
            Err(Response::status(apdu::sw_tries_left(self.tries_left)))
        }
    }

    /// The P1-P2 and 16-byte data checks shared by CHANGE REFERENCE DATA and RESET RETRY COUNTER.
    fn check_pin_pair(cmd: &Command) -> Option<Response> {
        if cmd.p1 != 0x00 || cmd.p2 != cards::PIN_REF {
            return Some(Response::status(apdu::SW_WRONG_P1P2));
        }
        (cmd.data.len() != 16).then(|| Response::status(apdu::SW_WRONG_LENGTH))
    }

    /// CHANGE REFERENCE DATA: old PIN block (8) then new PIN block (8).
    fn change(&mut self, cmd: &Command) -> Response {
        if let Some(refused) = Self::check_pin_pair(cmd) {
            return refused;
        }
        if self.tries_left == 0 {
            return Response::status(apdu::SW_AUTH_BLOCKED);
        }
        let Some(new) = pin_from_block(&cmd.data[8..]) else {
            return Response::status(apdu::SW_WRONG_DATA);
        };
        match self.present_pin(&cmd.data[..8]) {
            Ok(ok) => {
                self.pin = new;
                ok
            }
            Err(refused) => refused,
        }
    }

    /// RESET RETRY COUNTER: PUK (8 digits) then new PIN block (8).
    fn unblock(&mut self, cmd: &Command) -> Response {
        if let Some(refused) = Self::check_pin_pair(cmd) {
            return refused;
        }
        let Some(puk) = &self.puk else {
            return Response::status(apdu::SW_CONDITIONS_NOT_SATISFIED);
        };
        if self.puk_tries_left == 0 {
            return Response::status(apdu::SW_AUTH_BLOCKED);
        }
        let Some(new) = pin_from_block(&cmd.data[8..]) else {
            return Response::status(apdu::SW_WRONG_DATA);
        };
        if puk.matches_block(&cmd.data[..8]) {
            self.pin = new;
            self.tries_left = PIN_TRIES;
            self.puk_tries_left = PUK_TRIES;
            self.verified = false;
            Response::status(apdu::SW_OK)
        } else {
            self.puk_tries_left -= 1;
            Response::status(apdu::sw_tries_left(self.puk_tries_left))
        }
    }

    fn sign(&mut self, cmd: &Command) -> Response {
        if (cmd.p1, cmd.p2) != (0x9E, 0x9A) {
            return Response::status(apdu::SW_WRONG_P1P2);
        }
        if !self.fs.app_selected {
            return Response::status(apdu::SW_CONDITIONS_NOT_SATISFIED);
        }
        if !self.verified {
            return Response::status(apdu::SW_SECURITY_NOT_SATISFIED);
        }
        if cmd.data.is_empty() {
            return Response::status(apdu::SW_WRONG_LENGTH);
        }
        if let Some(wrong_le) = wrong_le_for_signature(cmd) {
            return wrong_le;
        }
        self.stats.signatures.fetch_add(1, Ordering::Relaxed);
        Response::ok(self.key.sign(&cmd.data))
    }
}

impl VirtualCard for VirtualCps {
    fn received(&mut self) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
    }

    fn atr(&self) -> Vec<u8> {
        ATR_CPS.to_vec()
    }

    fn process(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.stats.apdus.fetch_add(1, Ordering::Relaxed);
        let resp = match self.fs.common(bytes) {
            Err(done) => done,
            Ok(cmd) => match cmd.ins {
                apdu::INS_VERIFY => self.verify(&cmd),
                apdu::INS_CHANGE_REFERENCE_DATA => self.change(&cmd),
                apdu::INS_RESET_RETRY_COUNTER => self.unblock(&cmd),
                apdu::INS_PSO => self.sign(&cmd),
                _ => Response::status(apdu::SW_INS_NOT_SUPPORTED),
            },
        };
        resp.to_bytes()
    }

    fn reset(&mut self) {
        self.verified = false;
        self.fs.app_selected = false;
        self.fs.current = None;
    }
}

/// The PIN in a PIN block (4 digits then `FF` padding), if well formed.
fn pin_from_block(block: &[u8]) -> Option<Pin> {
    let digits: Vec<u8> = block.iter().copied().take_while(|b| *b != 0xFF).collect();
    if block[digits.len()..].iter().any(|b| *b != 0xFF) {
        return None;
    }
    Pin::new(std::str::from_utf8(&digits).ok()?)
}
