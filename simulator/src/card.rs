//! Virtual smart cards: a CPS and a Vitale card answering ISO 7816-4
//! command APDUs with the files and commands of `fse_formats::cards`
//! (documented in `formats/CARDS.md`). Private keys exist only here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ed25519_dalek::{Signer, SigningKey};
use fse_formats::apdu::{self, Command, Response};
use fse_formats::cards::{self, CpsHolder, Pin, Puk, Situation, VitaleData};

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
}

/// Length of an Ed25519 signature, what PSO and INTERNAL AUTHENTICATE return.
const SIGNATURE_LEN: u32 = 64;

/// `6C40` when the command's Le asks for another length than the 64-byte signature (ISO 7816-4:
/// wrong Le, the right one in SW2), so the caller may send it again; `None` when Le is absent,
/// `00` (up to 256) or `0000` (up to 65536), or 64.
fn wrong_le_for_signature(cmd: &Command) -> Option<Response> {
    match cmd.le {
        None | Some(256) | Some(65536) | Some(SIGNATURE_LEN) => None,
        Some(_) => Some(Response::status(0x6C00 | SIGNATURE_LEN as u16)),
    }
}

/// What the two cards share: an application, a file system, a selection.
struct FileSystem {
    aid: &'static [u8],
    files: BTreeMap<u16, Vec<u8>>,
    app_selected: bool,
    current: Option<u16>,
}

impl FileSystem {
    fn new(aid: &'static [u8]) -> Self {
        FileSystem {
            aid,
            files: BTreeMap::new(),
            app_selected: false,
            current: None,
        }
    }

    fn select(&mut self, cmd: &Command) -> Response {
        match (cmd.p1, cmd.p2) {
            (0x04, 0x00 | 0x0C) => {
                if cmd.data == self.aid {
                    self.app_selected = true;
                    self.current = None;
                    Response::status(apdu::SW_OK)
                } else {
                    Response::status(apdu::SW_FILE_NOT_FOUND)
                }
            }
            (0x02, 0x00 | 0x0C) => {
                let [hi, lo] = cmd.data[..] else {
                    return Response::status(apdu::SW_WRONG_LENGTH);
                };
                let fid = u16::from_be_bytes([hi, lo]);
                if self.app_selected && self.files.contains_key(&fid) {
                    self.current = Some(fid);
                    Response::status(apdu::SW_OK)
                } else {
                    Response::status(apdu::SW_FILE_NOT_FOUND)
                }
            }
            _ => Response::status(apdu::SW_WRONG_P1P2),
        }
    }

    fn read_binary(&self, cmd: &Command) -> Response {
        if !cmd.data.is_empty() {
            return Response::status(apdu::SW_WRONG_LENGTH);
        }
        let Some(file) = self.current.and_then(|f| self.files.get(&f)) else {
            return Response::status(apdu::SW_NO_CURRENT_EF);
        };
        if cmd.p1 & 0x80 != 0 {
            return Response::status(apdu::SW_WRONG_P1P2);
        }
        let offset = usize::from(u16::from_be_bytes([cmd.p1, cmd.p2]));
        if offset > file.len() {
            return Response::status(apdu::SW_WRONG_PARAMETERS);
        }
        let want = cmd.le.unwrap_or(256) as usize;
        let end = file.len().min(offset + want);
        let mut r = Response::ok(file[offset..end].to_vec());
        if end - offset < want && cmd.le.is_some_and(|le| le != 256 && le != 65536) {
            r.sw = apdu::SW_END_OF_FILE;
        }
        r
    }

    /// Common checks and commands; `None` means "the card's own instruction".
    fn common(&mut self, bytes: &[u8]) -> Result<Command, Response> {
        let cmd = Command::parse(bytes).map_err(|_| Response::status(apdu::SW_WRONG_LENGTH))?;
        if cmd.cla != 0x00 {
            return Err(Response::status(apdu::SW_CLA_NOT_SUPPORTED));
        }
        match cmd.ins {
            apdu::INS_SELECT => Err(self.select(&cmd)),
            apdu::INS_READ_BINARY => Err(self.read_binary(&cmd)),
            _ => Ok(cmd),
        }
    }
}

/// A card's signing key. Signatures are made by aws-lc-rs (already linked, through lapin's
/// rustls), twice as fast as ed25519-dalek on the machines measured: Ed25519 is deterministic
/// (RFC 8032), so they are the very signatures ed25519-dalek makes with the same key, and the
/// simulator spends less of the machine a test platform shares with fsed.
struct CardKey {
    key: SigningKey,
    /// The same key for aws-lc-rs (`None` if it refused it: ed25519-dalek signs then).
    fast: Option<aws_lc_rs::signature::Ed25519KeyPair>,
}

impl CardKey {
    fn new(key: SigningKey) -> CardKey {
        let fast = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(key.as_bytes()).ok();
        CardKey { key, fast }
    }

    /// The Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.fast {
            Some(k) => k.sign(message).as_ref().to_vec(),
            None => self.key.sign(message).to_bytes().to_vec(),
        }
    }
}

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

/// A simulated carte Vitale.
pub struct VirtualVitale {
    fs: FileSystem,
    key: CardKey,
    stats: Arc<CardStats>,
}

impl VirtualVitale {
    /// A Vitale card holding `data` (its `public_key` is replaced by `key`'s).
    pub fn new(data: &VitaleData, key: SigningKey) -> VirtualVitale {
        let mut fs = FileSystem::new(cards::AID_VITALE);
        fs.files
            .insert(cards::EF_VITALE_ID, cards::encode_vitale_id(data));
        fs.files.insert(
            cards::EF_VITALE_BENEFICIARIES,
            cards::encode_beneficiaries(&data.beneficiaries),
        );
        fs.files.insert(
            cards::EF_VITALE_KEY,
            cards::encode_key(&key.verifying_key().to_bytes()),
        );
        if let Some(amc) = &data.amc {
            fs.files
                .insert(cards::EF_VITALE_AMC, cards::encode_amc(amc));
        }
        if let Some(cert) = &data.certificate {
            fs.files.insert(cards::EF_VITALE_CERT, cert.clone());
        }
        VirtualVitale {
            fs,
            key: CardKey::new(key),
            stats: Arc::default(),
        }
    }

    /// The card's counters.
    pub fn stats(&self) -> Arc<CardStats> {
        Arc::clone(&self.stats)
    }
}

impl VirtualCard for VirtualVitale {
    fn atr(&self) -> Vec<u8> {
        ATR_VITALE.to_vec()
    }

    fn process(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.stats.apdus.fetch_add(1, Ordering::Relaxed);
        let resp = match self.fs.common(bytes) {
            Err(done) => done,
            Ok(cmd) if cmd.ins == apdu::INS_INTERNAL_AUTHENTICATE => {
                if (cmd.p1, cmd.p2) != (0, 0) {
                    Response::status(apdu::SW_WRONG_P1P2)
                } else if !self.fs.app_selected {
                    Response::status(apdu::SW_CONDITIONS_NOT_SATISFIED)
                } else if cmd.data.len() != 32 {
                    Response::status(apdu::SW_WRONG_LENGTH)
                } else if let Some(wrong_le) = wrong_le_for_signature(&cmd) {
                    wrong_le
                } else {
                    self.stats.authentications.fetch_add(1, Ordering::Relaxed);
                    Response::ok(self.key.sign(&cmd.data))
                }
            }
            Ok(_) => Response::status(apdu::SW_INS_NOT_SUPPORTED),
        };
        resp.to_bytes()
    }

    fn reset(&mut self) {
        self.fs.app_selected = false;
        self.fs.current = None;
    }
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
mod tests {
    use fse_formats::apdu::Command;
    use fse_formats::cards::{self, CardKind, Pin};
    use fse_formats::channel::{exchange, CardError};

    use super::*;
    use crate::profiles;

    #[test]
    fn a_card_signs_as_ed25519_dalek_does_with_its_key() {
        for name in ["cps", "vitale", "other"] {
            let key = profiles::test_key(name);
            let card = CardKey::new(key.clone());
            assert!(card.fast.is_some(), "aws-lc-rs takes the key");
            for message in [&b""[..], b"lot header", &[0x5a; 32], &[7; 1000]] {
                assert_eq!(card.sign(message), key.sign(message).to_bytes().to_vec());
            }
        }
    }

    fn status(card: &mut dyn VirtualCard, cmd: Command) -> u16 {
        exchange(&mut InProcess(card), &cmd).unwrap().sw
    }

    #[test]
    fn the_daemon_reads_the_default_cards() {
        let mut cps = profiles::default_cps();
        let mut vit = profiles::default_vitale();
        assert_eq!(
            cards::identify(&mut InProcess(&mut cps)).unwrap(),
            CardKind::Cps
        );
        assert_eq!(
            cards::identify(&mut InProcess(&mut vit)).unwrap(),
            CardKind::Vitale
        );
        let data = cards::read_cps(&mut InProcess(&mut cps)).unwrap();
        let (holder, situations) = profiles::default_cps_holder();
        assert_eq!(data.holder, holder);
        assert_eq!(data.situations, situations);
        assert!(fse_formats::ids::rpps_is_valid(
            &data.holder.national_id[1..]
        ));
        assert!(data.certificate.is_some(), "the CPS holds its certificate");
        let mut v = cards::read_vitale(&mut InProcess(&mut vit)).unwrap();
        assert!(v.certificate.take().is_some(), "the Vitale card too");
        assert_eq!(v, profiles::default_vitale_data());
        assert!(v
            .beneficiaries
            .iter()
            .all(|b| fse_formats::ids::nir_is_valid(&b.nir)));
    }

    #[test]
    fn pin_counter_blocks_after_three_wrong_pins_and_signing_needs_the_pin() {
        let mut cps = profiles::default_cps();
        let stats = cps.stats();
        let mut ch = InProcess(&mut cps);
        cards::select_aid(&mut ch, cards::AID_CPS).unwrap();
        assert_eq!(
            cards::cps_sign(&mut ch, b"lot"),
            Err(CardError::PinRequired)
        );
        let wrong = Pin::new("9999").unwrap();
        assert_eq!(
            cards::verify_pin(&mut ch, &wrong),
            Err(CardError::WrongPin { tries_left: 2 })
        );
        assert_eq!(cards::pin_tries_left(&mut ch).unwrap(), Some(2));
        let right = Pin::new(profiles::DEFAULT_PIN).unwrap();
        cards::verify_pin(&mut ch, &right).unwrap();
        assert_eq!(cards::pin_tries_left(&mut ch).unwrap(), None, "verified");
        let sig = cards::cps_sign(&mut ch, b"lot header").unwrap();
        let key = cards::read_cps(&mut ch).unwrap().public_key;
        assert!(cards::verify_signature(&key, b"lot header", &sig));
        assert_eq!(CardStats::get(&stats.signatures), 1);
        for left in [2, 1] {
            assert_eq!(
                cards::verify_pin(&mut ch, &wrong),
                Err(CardError::WrongPin { tries_left: left })
            );
        }
        assert_eq!(
            cards::verify_pin(&mut ch, &wrong),
            Err(CardError::PinBlocked)
        );
        assert_eq!(
            cards::verify_pin(&mut ch, &right),
            Err(CardError::PinBlocked),
            "the right PIN no longer opens a blocked card"
        );
        assert_eq!(
            cards::cps_sign(&mut ch, b"lot"),
            Err(CardError::PinRequired)
        );
    }

    /// Raw APDU in, status word out (the last two bytes) and the data length before it.
    fn raw(card: &mut dyn VirtualCard, apdu: &[u8]) -> (usize, u16) {
        let r = card.process(apdu);
        let n = r.len() - 2;
        (n, u16::from_be_bytes([r[n], r[n + 1]]))
    }

    #[test]
    fn a_signature_asked_with_another_le_than_64_answers_6c40() {
        let mut cps = profiles::default_cps();
        let stats = cps.stats();
        let mut select = vec![0x00, 0xA4, 0x04, 0x0C, cards::AID_CPS.len() as u8];
        select.extend_from_slice(cards::AID_CPS);
        assert_eq!(raw(&mut cps, &select), (0, 0x9000));
        let mut verify = vec![0x00, 0x20, 0x00, cards::PIN_REF, 0x08];
        verify.extend_from_slice(profiles::DEFAULT_PIN.as_bytes());
        verify.resize(5 + 8, 0xFF);
        assert_eq!(raw(&mut cps, &verify), (0, 0x9000));
        // PSO with a 3-byte message "lot" and Le: 00 2A 9E 9A 03 'l' 'o' 't' Le.
        let pso = |le: u8| vec![0x00, 0x2A, 0x9E, 0x9A, 0x03, b'l', b'o', b't', le];
        // Le 0x10 (16) and 0x41 (65) are wrong: 6C40, 0x40 = 64 the signature's length.
        assert_eq!(raw(&mut cps, &pso(0x10)), (0, 0x6C40));
        assert_eq!(raw(&mut cps, &pso(0x41)), (0, 0x6C40));
        assert_eq!(CardStats::get(&stats.signatures), 0, "no signature made");
        // Le 0x40 (64) and 0x00 (up to 256) get the 64 bytes.
        assert_eq!(raw(&mut cps, &pso(0x40)), (64, 0x9000));
        assert_eq!(raw(&mut cps, &pso(0x00)), (64, 0x9000));

        let mut vit = profiles::default_vitale();
        let mut select = vec![0x00, 0xA4, 0x04, 0x0C, cards::AID_VITALE.len() as u8];
        select.extend_from_slice(cards::AID_VITALE);
        assert_eq!(raw(&mut vit, &select), (0, 0x9000));
        // INTERNAL AUTHENTICATE: 00 88 00 00 20 + 32-byte challenge + Le.
        let auth = |le: u8| {
            let mut a = vec![0x00, 0x88, 0x00, 0x00, 0x20];
            a.extend_from_slice(&[7; 32]);
            a.push(le);
            a
        };
        assert_eq!(raw(&mut vit, &auth(0x20)), (0, 0x6C40));
        assert_eq!(raw(&mut vit, &auth(0x40)), (64, 0x9000));
        assert_eq!(raw(&mut vit, &auth(0x00)), (64, 0x9000));
    }

    #[test]
    fn read_binary_without_le_reads_up_to_256_bytes() {
        let mut cps = profiles::default_cps();
        let mut select = vec![0x00, 0xA4, 0x04, 0x0C, cards::AID_CPS.len() as u8];
        select.extend_from_slice(cards::AID_CPS);
        assert_eq!(raw(&mut cps, &select), (0, 0x9000));
        assert_eq!(
            raw(&mut cps, &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0xD1, 0x00]),
            (0, 0x9000)
        );
        // Case 1 (no Le) reads as Le = 00: the whole holder file (under 256 bytes), 9000.
        let whole = cps.process(&[0x00, 0xB0, 0x00, 0x00, 0x00]);
        assert_eq!(cps.process(&[0x00, 0xB0, 0x00, 0x00]), whole);
        assert!(whole.len() > 2 && whole.ends_with(&[0x90, 0x00]));
    }

    #[test]
    fn change_and_unblock_with_the_puk() {
        let mut cps = profiles::default_cps();
        let mut ch = InProcess(&mut cps);
        let (old, new) = (
            Pin::new(profiles::DEFAULT_PIN).unwrap(),
            Pin::new("4321").unwrap(),
        );
        assert_eq!(
            cards::change_pin(&mut ch, &new, &old),
            Err(CardError::WrongPin { tries_left: 2 })
        );
        cards::change_pin(&mut ch, &old, &new).unwrap();
        assert_eq!(
            cards::verify_pin(&mut ch, &old),
            Err(CardError::WrongPin { tries_left: 2 })
        );
        cards::verify_pin(&mut ch, &old).unwrap_err();
        assert_eq!(cards::verify_pin(&mut ch, &old), Err(CardError::PinBlocked));
        let wrong_puk = fse_formats::cards::Puk::new("00000000").unwrap();
        assert_eq!(
            cards::unblock_pin(&mut ch, &wrong_puk, &old),
            Err(CardError::WrongPin { tries_left: 9 })
        );
        let puk = fse_formats::cards::Puk::new(profiles::DEFAULT_PUK).unwrap();
        cards::unblock_pin(&mut ch, &puk, &old).unwrap();
        assert_eq!(cards::pin_tries_left(&mut ch).unwrap(), Some(3));
        cards::verify_pin(&mut ch, &old).unwrap();
    }

    #[test]
    fn reset_clears_the_verified_pin() {
        let mut cps = profiles::default_cps();
        cards::verify_pin(
            &mut InProcess(&mut cps),
            &Pin::new(profiles::DEFAULT_PIN).unwrap(),
        )
        .unwrap();
        cps.reset();
        let mut ch = InProcess(&mut cps);
        cards::select_aid(&mut ch, cards::AID_CPS).unwrap();
        assert_eq!(cards::cps_sign(&mut ch, b"x"), Err(CardError::PinRequired));
    }

    #[test]
    fn vitale_proves_presence() {
        let mut vit = profiles::default_vitale();
        let challenge = [42u8; 32];
        let sig = cards::vitale_authenticate(&mut InProcess(&mut vit), &challenge).unwrap();
        let key = profiles::default_vitale_data().public_key;
        assert!(cards::verify_signature(&key, &challenge, &sig));
        assert!(!cards::verify_signature(&key, &[0u8; 32], &sig));
        assert_eq!(CardStats::get(&vit.stats().authentications), 1);
    }

    #[test]
    fn standard_status_words() {
        let mut cps = profiles::default_cps();
        assert_eq!(
            status(&mut cps, Command::new(0x80, 0xA4, 4, 0)),
            apdu::SW_CLA_NOT_SUPPORTED
        );
        assert_eq!(
            status(&mut cps, Command::new(0, 0x99, 0, 0)),
            apdu::SW_INS_NOT_SUPPORTED
        );
        assert_eq!(
            status(&mut cps, Command::new(0, 0xA4, 9, 9)),
            apdu::SW_WRONG_P1P2
        );
        assert_eq!(
            status(&mut cps, Command::new(0, 0xB0, 0, 0).with_le(256)),
            apdu::SW_NO_CURRENT_EF
        );
        assert_eq!(
            status(
                &mut cps,
                Command::new(0, 0xA4, 4, 0x0C).with_data(cards::AID_VITALE)
            ),
            apdu::SW_FILE_NOT_FOUND
        );
        assert_eq!(
            status(
                &mut cps,
                Command::new(0, 0xA4, 4, 0x0C).with_data(cards::AID_CPS)
            ),
            apdu::SW_OK
        );
        assert_eq!(
            status(
                &mut cps,
                Command::new(0, 0xA4, 2, 0x0C).with_data([0x12, 0x34])
            ),
            apdu::SW_FILE_NOT_FOUND
        );
        assert_eq!(
            status(&mut cps, Command::new(0, 0xA4, 2, 0x0C).with_data([0xD1])),
            apdu::SW_WRONG_LENGTH
        );
        assert_eq!(
            status(
                &mut cps,
                Command::new(0, 0xA4, 2, 0x0C).with_data([0xD1, 0x00])
            ),
            apdu::SW_OK
        );
        assert_eq!(
            status(&mut cps, Command::new(0, 0xB0, 0x7F, 0).with_le(16)),
            apdu::SW_WRONG_PARAMETERS
        );
        assert_eq!(
            status(
                &mut cps,
                Command::new(0, 0x20, 0, 0x81).with_data([1, 2, 3])
            ),
            apdu::SW_WRONG_LENGTH
        );
        assert_eq!(cps.process(&[0x00]), vec![0x67, 0x00], "malformed APDU");
    }

    #[test]
    fn atrs_are_distinct_and_carry_a_valid_tck() {
        assert_ne!(ATR_CPS, ATR_VITALE);
        for atr in [ATR_CPS, ATR_VITALE] {
            // T=1 is offered, so TCK is present: T0..TCK XOR to zero (ISO 7816-3, 8.2.5).
            assert_eq!(atr[1..].iter().fold(0u8, |x, b| x ^ b), 0, "{atr:02X?}");
        }
    }

    #[test]
    fn files_over_256_bytes_read_in_pieces() {
        let (holder, mut situations) = profiles::default_cps_holder();
        situations[0].place = "x".repeat(600);
        let mut cps = VirtualCps::new(
            &holder,
            &situations,
            Pin::new("1234").unwrap(),
            profiles::test_key("big"),
        );
        let data = cards::read_cps(&mut InProcess(&mut cps)).unwrap();
        assert_eq!(data.situations[0].place.len(), 600);
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
