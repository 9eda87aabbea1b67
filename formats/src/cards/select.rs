//! SELECT: an application by its AID, an elementary file by its identifier, and finding which
//! application a card holds.

use super::{CardKind, AID_CPS, AID_VITALE};
use crate::apdu::{self, Command, INS_SELECT};
use crate::channel::{exchange, CardChannel, CardError};

/// SELECT an application by AID.
pub fn select_aid<C: CardChannel + ?Sized>(ch: &mut C, aid: &[u8]) -> Result<(), CardError> {
    let resp = exchange(
        ch,
        &Command::new(0x00, INS_SELECT, 0x04, 0x0C).with_data(aid),
    )?;
    match resp.sw {
        apdu::SW_OK => Ok(()),
        apdu::SW_FILE_NOT_FOUND => Err(CardError::WrongCard),
        sw => Err(CardError::Status {
            command: "SELECT",
            sw,
        }),
    }
}

/// SELECT an elementary file by its identifier.
pub fn select_file<C: CardChannel + ?Sized>(ch: &mut C, fid: u16) -> Result<(), CardError> {
    let resp = exchange(
        ch,
        &Command::new(0x00, INS_SELECT, 0x02, 0x0C).with_data(fid.to_be_bytes()),
    )?;
    match resp.sw {
        apdu::SW_OK => Ok(()),
        apdu::SW_FILE_NOT_FOUND => Err(CardError::FileNotFound(fid)),
        sw => Err(CardError::Status {
            command: "SELECT",
            sw,
        }),
    }
}

/// Finds which application the card holds.
pub fn identify<C: CardChannel + ?Sized>(ch: &mut C) -> Result<CardKind, CardError> {
    match select_aid(ch, AID_CPS) {
        Ok(()) => return Ok(CardKind::Cps),
        Err(CardError::WrongCard) => {}
        Err(e) => return Err(e),
    }
    match select_aid(ch, AID_VITALE) {
        Ok(()) => Ok(CardKind::Vitale),
        Err(CardError::WrongCard) => Ok(CardKind::Unknown),
        Err(e) => Err(e),
    }
}
