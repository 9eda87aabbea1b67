//! What the CPS and the Vitale card share: the file system with its SELECT and READ BINARY,
//! the check of a signature's Le, and the card's signing key.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer, SigningKey};
use fse_formats::apdu::{self, Command, Response};

/// Length of an Ed25519 signature, what PSO and INTERNAL AUTHENTICATE return.
pub(super) const SIGNATURE_LEN: u32 = 64;

/// `6C40` when the command's Le asks for another length than the 64-byte signature (ISO 7816-4:
/// wrong Le, the right one in SW2), so the caller may send it again; `None` when Le is absent,
/// `00` (up to 256) or `0000` (up to 65536), or 64.
pub(super) fn wrong_le_for_signature(cmd: &Command) -> Option<Response> {
    match cmd.le {
        None | Some(256) | Some(65536) | Some(SIGNATURE_LEN) => None,
        Some(_) => Some(Response::status(0x6C00 | SIGNATURE_LEN as u16)),
    }
}

/// What the two cards share: an application, a file system, a selection.
pub(super) struct FileSystem {
    pub(super) aid: &'static [u8],
    pub(super) files: BTreeMap<u16, Vec<u8>>,
    pub(super) app_selected: bool,
    pub(super) current: Option<u16>,
}

impl FileSystem {
    pub(super) fn new(aid: &'static [u8]) -> Self {
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
    pub(super) fn common(&mut self, bytes: &[u8]) -> Result<Command, Response> {
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
pub(super) struct CardKey {
    key: SigningKey,
    /// The same key for aws-lc-rs (`None` if it refused it: ed25519-dalek signs then).
    pub(super) fast: Option<aws_lc_rs::signature::Ed25519KeyPair>,
}

impl CardKey {
    pub(super) fn new(key: SigningKey) -> CardKey {
        let fast = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(key.as_bytes()).ok();
        CardKey { key, fast }
    }

    /// The Ed25519 signature of `message`.
    pub(super) fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.fast {
            Some(k) => k.sign(message).as_ref().to_vec(),
            None => self.key.sign(message).to_bytes().to_vec(),
        }
    }
}
