//! READ BINARY: a whole elementary file, a file a card may lack, a public-key file.

use super::select_file;
use crate::apdu::{self, Command, INS_READ_BINARY};
use crate::channel::{exchange, CardChannel, CardError};
use crate::tlv::Records;

/// Reads the whole current EF with READ BINARY, 256 bytes at a time.
pub fn read_current_file<C: CardChannel + ?Sized>(ch: &mut C) -> Result<Vec<u8>, CardError> {
    let mut out = Vec::new();
    loop {
        if out.len() > 0x7FFF {
            return Err(CardError::Data("file larger than 32 KiB".into()));
        }
        let offset = out.len() as u16;
        let [hi, lo] = offset.to_be_bytes();
        let resp = exchange(
            ch,
            &Command::new(0x00, INS_READ_BINARY, hi, lo).with_le(256),
        )?;
        match resp.sw {
            apdu::SW_OK => {
                let n = resp.data.len();
                out.extend_from_slice(&resp.data);
                if n < 256 {
                    return Ok(out);
                }
            }
            apdu::SW_END_OF_FILE => {
                out.extend_from_slice(&resp.data);
                return Ok(out);
            }
            apdu::SW_WRONG_PARAMETERS if !out.is_empty() => return Ok(out),
            apdu::SW_SECURITY_NOT_SATISFIED => return Err(CardError::PinRequired),
            sw => {
                return Err(CardError::Status {
                    command: "READ BINARY",
                    sw,
                })
            }
        }
    }
}

/// Selects then reads one EF.
pub fn read_file<C: CardChannel + ?Sized>(ch: &mut C, fid: u16) -> Result<Vec<u8>, CardError> {
    select_file(ch, fid)?;
    read_current_file(ch)
}

/// Reads a public-key file: its 32-byte key.
pub(super) fn read_key<C: CardChannel + ?Sized>(
    ch: &mut C,
    fid: u16,
) -> Result<[u8; 32], CardError> {
    let raw = read_file(ch, fid)?;
    let recs = Records::new(&raw)?;
    recs.bytes(0x80)?
        .try_into()
        .map_err(|_| CardError::Data(format!("key file {fid:04X}: expected 32 bytes")))
}

/// Reads an EF that a card may not hold: `None` when the card answers "file not found".
pub(super) fn read_optional<C: CardChannel + ?Sized>(
    ch: &mut C,
    fid: u16,
) -> Result<Option<Vec<u8>>, CardError> {
    match read_file(ch, fid) {
        Ok(raw) => Ok(Some(raw)),
        Err(CardError::FileNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
