//! The CPS holder's PIN and PUK, and the exchanges on them: VERIFY, CHANGE REFERENCE DATA,
//! RESET RETRY COUNTER and the tries left.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{select_aid, AID_CPS, PIN_REF};
use crate::apdu::{self, Command, INS_CHANGE_REFERENCE_DATA, INS_RESET_RETRY_COUNTER, INS_VERIFY};
use crate::channel::{exchange, CardChannel, CardError};

/// A CPS PIN: 4 digits, zeroized when dropped, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin(String);

impl Pin {
    /// Accepts exactly 4 ASCII digits.
    pub fn new(digits: &str) -> Option<Pin> {
        (digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Pin(digits.to_string()))
    }

    /// The PIN block sent in VERIFY: ASCII digits padded with `FF` to 8 bytes.
    pub fn block(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(vec![0xFF; 8]);
        b[..self.0.len()].copy_from_slice(self.0.as_bytes());
        b
    }

    /// Compares against a PIN block without early exit.
    pub fn matches_block(&self, block: &[u8]) -> bool {
        let own = self.block();
        block.len() == own.len()
            && own.iter().zip(block).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(****)")
    }
}

/// The 8-digit unblocking code (PUK) from the PIN letter, zeroized when dropped, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Puk(String);

impl Puk {
    /// Accepts exactly 8 ASCII digits.
    pub fn new(digits: &str) -> Option<Puk> {
        (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Puk(digits.to_string()))
    }

    /// The 8 ASCII digits sent in RESET RETRY COUNTER.
    pub fn block(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.as_bytes().to_vec())
    }

    /// Compares against a PUK block without early exit.
    pub fn matches_block(&self, block: &[u8]) -> bool {
        let own = self.block();
        block.len() == own.len()
            && own.iter().zip(block).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for Puk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Puk(********)")
    }
}

/// Presents the PIN to the CPS. Never retried here: a wrong PIN reports the tries left.
pub fn verify_pin<C: CardChannel + ?Sized>(ch: &mut C, pin: &Pin) -> Result<(), CardError> {
    select_aid(ch, AID_CPS)?;
    let block = pin.block();
    let resp = exchange(
        ch,
        &Command::new(0x00, INS_VERIFY, 0x00, PIN_REF).with_data(block.as_slice()),
    )?;
    pin_status(resp.sw)
}

/// Changes the PIN (CHANGE REFERENCE DATA: old PIN block then new PIN block).
pub fn change_pin<C: CardChannel + ?Sized>(
    ch: &mut C,
    old: &Pin,
    new: &Pin,
) -> Result<(), CardError> {
    select_aid(ch, AID_CPS)?;
    let mut data = Zeroizing::new(Vec::with_capacity(16));
    data.extend_from_slice(&old.block());
    data.extend_from_slice(&new.block());
    let resp = exchange(
        ch,
        &Command::new(0x00, INS_CHANGE_REFERENCE_DATA, 0x00, PIN_REF).with_data(data.as_slice()),
    )?;
    pin_status(resp.sw)
}

/// Unblocks the PIN with the PUK and sets a new PIN (RESET RETRY COUNTER: PUK then new PIN block).
///
/// A wrong PUK reports the PUK tries left as [`CardError::WrongPin`]; a blocked PUK as [`CardError::PinBlocked`].
pub fn unblock_pin<C: CardChannel + ?Sized>(
    ch: &mut C,
    puk: &Puk,
    new: &Pin,
) -> Result<(), CardError> {
    select_aid(ch, AID_CPS)?;
    let mut data = Zeroizing::new(Vec::with_capacity(16));
    data.extend_from_slice(&puk.block());
    data.extend_from_slice(&new.block());
    let resp = exchange(
        ch,
        &Command::new(0x00, INS_RESET_RETRY_COUNTER, 0x00, PIN_REF).with_data(data.as_slice()),
    )?;
    pin_status(resp.sw)
}

/// Asks the CPS how many PIN tries are left (VERIFY with no data); `Ok(None)` when verified already.
pub fn pin_tries_left<C: CardChannel + ?Sized>(ch: &mut C) -> Result<Option<u8>, CardError> {
    select_aid(ch, AID_CPS)?;
    let resp = exchange(ch, &Command::new(0x00, INS_VERIFY, 0x00, PIN_REF))?;
    match pin_status(resp.sw) {
        Ok(()) => Ok(None),
        Err(CardError::WrongPin { tries_left }) => Ok(Some(tries_left)),
        Err(CardError::PinBlocked) => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

/// Resets the PIN's verification status on the card (VERIFY with P1 = `FF` and no data,
/// ISO/IEC 7816-4): the card signs nothing more until the PIN is presented again. No try is
/// spent.
pub fn reset_pin_status<C: CardChannel + ?Sized>(ch: &mut C) -> Result<(), CardError> {
    select_aid(ch, AID_CPS)?;
    let resp = exchange(ch, &Command::new(0x00, INS_VERIFY, 0xFF, PIN_REF))?;
    match resp.sw {
        apdu::SW_OK => Ok(()),
        sw => Err(CardError::Status {
            command: "VERIFY (reset)",
            sw,
        }),
    }
}

fn pin_status(sw: u16) -> Result<(), CardError> {
    match sw {
        apdu::SW_OK => Ok(()),
        sw if sw & 0xFFF0 == 0x63C0 => match (sw & 0x0F) as u8 {
            0 => Err(CardError::PinBlocked),
            n => Err(CardError::WrongPin { tries_left: n }),
        },
        apdu::SW_AUTH_BLOCKED => Err(CardError::PinBlocked),
        sw => Err(CardError::Status {
            command: "VERIFY",
            sw,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_accepts_four_digits_only_and_hides_itself() {
        assert!(Pin::new("1234").is_some());
        assert!(Pin::new("123").is_none());
        assert!(Pin::new("12a4").is_none());
        let pin = Pin::new("1234").unwrap();
        assert_eq!(format!("{pin:?}"), "Pin(****)");
        assert_eq!(pin.block().as_slice(), b"1234\xFF\xFF\xFF\xFF");
        assert!(pin.matches_block(b"1234\xFF\xFF\xFF\xFF"));
        assert!(!pin.matches_block(b"1235\xFF\xFF\xFF\xFF"));
    }

    #[test]
    fn pin_status_words_map_to_errors() {
        assert_eq!(
            pin_status(0x63C2),
            Err(CardError::WrongPin { tries_left: 2 })
        );
        assert_eq!(pin_status(0x63C0), Err(CardError::PinBlocked));
        assert_eq!(pin_status(0x6983), Err(CardError::PinBlocked));
        assert_eq!(pin_status(0x9000), Ok(()));
    }
}
