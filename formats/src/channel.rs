//! The `CardChannel` trait — a card link that only transmits bytes — and the
//! exchange layer above it that maps status words, follows `61xx` (GET
//! RESPONSE) and `6Cxx` (wrong Le) and turns card answers into typed errors.
//!
//! PC/SC readers, the vpcd link and in-process simulated cards all implement
//! `CardChannel`; every card command in `crate::cards` is written against it.

use thiserror::Error;

use crate::apdu::{self, ApduError, Command, Response};
use crate::tlv::TlvError;

/// Why a channel could not carry an APDU.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// The card left the reader (or was reset) mid-operation.
    #[error("card removed or reset")]
    CardRemoved,
    /// The reader or link failed.
    #[error("reader failure: {0}")]
    Reader(String),
}

/// A link to one card: sends a command APDU, returns the response APDU.
pub trait CardChannel {
    /// Transmits raw command bytes and returns raw response bytes (data + SW1 SW2).
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError>;

    /// Whether the card was reset since the last call (its PIN state is then gone); clears the flag.
    fn take_reset(&mut self) -> bool {
        false
    }
}

impl<T: CardChannel + ?Sized> CardChannel for &mut T {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        (**self).transmit(command)
    }

    fn take_reset(&mut self) -> bool {
        (**self).take_reset()
    }
}

impl<T: CardChannel + ?Sized> CardChannel for Box<T> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        (**self).transmit(command)
    }

    fn take_reset(&mut self) -> bool {
        (**self).take_reset()
    }
}

/// What went wrong talking to a card, in terms a caller can act on.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CardError {
    /// The link failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The card answered bytes that are not a response APDU.
    #[error("malformed APDU: {0}")]
    Apdu(String),
    /// The card is not of the expected kind (its application is absent).
    #[error("card application not found")]
    WrongCard,
    /// The PIN was wrong; the card has this many tries left.
    #[error("wrong PIN, {tries_left} tries left")]
    WrongPin {
        /// Tries left before the PIN blocks.
        tries_left: u8,
    },
    /// The PIN is blocked (no tries left).
    #[error("PIN blocked")]
    PinBlocked,
    /// The operation needs a verified PIN.
    #[error("PIN not verified")]
    PinRequired,
    /// A file the card must hold is missing.
    #[error("file {0:04X} not found on the card")]
    FileNotFound(u16),
    /// The card refused a command with this status word.
    #[error("{command} refused by the card with status {sw:04X}")]
    Status {
        /// The command refused.
        command: &'static str,
        /// Its status word.
        sw: u16,
    },
    /// A card file does not have the documented layout.
    #[error("card data: {0}")]
    Data(String),
}

impl From<ApduError> for CardError {
    fn from(e: ApduError) -> Self {
        CardError::Apdu(e.to_string())
    }
}

impl From<TlvError> for CardError {
    fn from(e: TlvError) -> Self {
        CardError::Data(e.to_string())
    }
}

/// Sends `cmd`, following `61xx` with GET RESPONSE and `6Cxx` with a corrected Le.
pub fn exchange<C: CardChannel + ?Sized>(ch: &mut C, cmd: &Command) -> Result<Response, CardError> {
    let mut resp = Response::parse(&ch.transmit(&cmd.to_bytes()?)?)?;
    if resp.sw >> 8 == 0x6C {
        let retry = cmd.clone().with_le(u32::from(resp.sw as u8).max(1));
        resp = Response::parse(&ch.transmit(&retry.to_bytes()?)?)?;
    }
    let mut data = std::mem::take(&mut resp.data);
    // Bounded: a card announcing more than 64 KiB of chained data is refused.
    while resp.sw >> 8 == 0x61 {
        if data.len() > 65536 {
            return Err(CardError::Apdu("GET RESPONSE chain over 64 KiB".into()));
        }
        let le = match resp.sw as u8 {
            0 => 256,
            n => u32::from(n),
        };
        let get = Command::new(cmd.cla, 0xC0, 0, 0).with_le(le);
        resp = Response::parse(&ch.transmit(&get.to_bytes()?)?)?;
        data.append(&mut resp.data);
    }
    resp.data = data;
    Ok(resp)
}

/// Sends `cmd` and requires `9000` (or `6282`, end of file, for reads).
pub fn expect_ok<C: CardChannel + ?Sized>(
    ch: &mut C,
    name: &'static str,
    cmd: &Command,
) -> Result<Vec<u8>, CardError> {
    let resp = exchange(ch, cmd)?;
    match resp.sw {
        apdu::SW_OK | apdu::SW_END_OF_FILE => Ok(resp.data),
        apdu::SW_SECURITY_NOT_SATISFIED => Err(CardError::PinRequired),
        apdu::SW_AUTH_BLOCKED => Err(CardError::PinBlocked),
        sw => Err(CardError::Status { command: name, sw }),
    }
}
