//! ISO 7816-4 command and response APDUs and the status words fsed's cards use.
//!
//! Short and extended length are both encoded and parsed (ISO 7816-4 §5.1).
//! This module only shapes bytes: what a status word means for a given
//! command is decided by the exchange that sends it (`crate::exchange`).

use thiserror::Error;

/// Status word: command completed.
pub const SW_OK: u16 = 0x9000;
/// Status word: end of file reached before Le bytes (warning).
pub const SW_END_OF_FILE: u16 = 0x6282;
/// Status word: wrong length (Lc or Le).
pub const SW_WRONG_LENGTH: u16 = 0x6700;
/// Status word: security status not satisfied (PIN not verified).
pub const SW_SECURITY_NOT_SATISFIED: u16 = 0x6982;
/// Status word: authentication method blocked (PIN tries exhausted).
pub const SW_AUTH_BLOCKED: u16 = 0x6983;
/// Status word: conditions of use not satisfied.
pub const SW_CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
/// Status word: command not allowed, no current EF.
pub const SW_NO_CURRENT_EF: u16 = 0x6986;
/// Status word: incorrect data field.
pub const SW_WRONG_DATA: u16 = 0x6A80;
/// Status word: file or application not found.
pub const SW_FILE_NOT_FOUND: u16 = 0x6A82;
/// Status word: incorrect P1 or P2.
pub const SW_WRONG_P1P2: u16 = 0x6A86;
/// Status word: wrong parameters P1-P2 (offset outside the EF).
pub const SW_WRONG_PARAMETERS: u16 = 0x6B00;
/// Status word: instruction not supported.
pub const SW_INS_NOT_SUPPORTED: u16 = 0x6D00;
/// Status word: class not supported.
pub const SW_CLA_NOT_SUPPORTED: u16 = 0x6E00;

/// Instruction byte of SELECT.
pub const INS_SELECT: u8 = 0xA4;
/// Instruction byte of READ BINARY.
pub const INS_READ_BINARY: u8 = 0xB0;
/// Instruction byte of VERIFY.
pub const INS_VERIFY: u8 = 0x20;
/// Instruction byte of CHANGE REFERENCE DATA.
pub const INS_CHANGE_REFERENCE_DATA: u8 = 0x24;
/// Instruction byte of RESET RETRY COUNTER.
pub const INS_RESET_RETRY_COUNTER: u8 = 0x2C;
/// Instruction byte of PERFORM SECURITY OPERATION.
pub const INS_PSO: u8 = 0x2A;
/// Instruction byte of INTERNAL AUTHENTICATE.
pub const INS_INTERNAL_AUTHENTICATE: u8 = 0x88;

/// A status word `63Cx`: verification failed, `x` tries left.
pub fn sw_tries_left(tries: u8) -> u16 {
    0x63C0 | u16::from(tries & 0x0F)
}

/// Errors in the shape of an APDU.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ApduError {
    /// Fewer than four header bytes.
    #[error("command APDU shorter than its 4-byte header")]
    TooShort,
    /// The length fields disagree with the number of bytes.
    #[error("command APDU length fields do not match its size ({0} bytes)")]
    BadLength(usize),
    /// A response shorter than its two status bytes.
    #[error("response APDU shorter than its 2 status bytes")]
    NoStatus,
    /// A data field too long for an APDU.
    #[error("data field of {0} bytes does not fit an APDU")]
    DataTooLong(usize),
}

/// A command APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Class byte.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// First parameter.
    pub p1: u8,
    /// Second parameter.
    pub p2: u8,
    /// Command data (Lc is its length).
    pub data: Vec<u8>,
    /// Expected response length; `Some(256)` in short form (or 65536 extended) means "as much as there is".
    pub le: Option<u32>,
}

impl Command {
    /// A command with no data and no expected response.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Self {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
        }
    }

    /// Sets the data field.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    /// Sets the expected response length.
    pub fn with_le(mut self, le: u32) -> Self {
        self.le = Some(le);
        self
    }

    /// Encodes the command, in short form when it fits and extended form otherwise.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ApduError> {
        if self.data.len() > 65535 {
            return Err(ApduError::DataTooLong(self.data.len()));
        }
        let extended = self.data.len() > 255 || self.le.is_some_and(|le| le > 256);
        let mut out = Vec::with_capacity(self.data.len() + 9);
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if extended {
            out.push(0);
            if !self.data.is_empty() {
                out.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
                out.extend_from_slice(&self.data);
            }
            if let Some(le) = self.le {
                let le = if le >= 65536 { 0 } else { le as u16 };
                out.extend_from_slice(&le.to_be_bytes());
            }
        } else {
            if !self.data.is_empty() {
                out.push(self.data.len() as u8);
                out.extend_from_slice(&self.data);
            }
            if let Some(le) = self.le {
                out.push(if le >= 256 { 0 } else { le as u8 });
            }
        }
        Ok(out)
    }

    /// Parses a command APDU (ISO 7816-4 cases 1 to 4, short and extended).
    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        if bytes.len() < 4 {
            return Err(ApduError::TooShort);
        }
        let mut cmd = Command::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        let body = &bytes[4..];
        match body.len() {
            0 => {}
            1 => {
                cmd.le = Some(if body[0] == 0 {
                    256
                } else {
                    u32::from(body[0])
                })
            }
            _ if body[0] != 0 => {
                let lc = usize::from(body[0]);
                match body.len() - 1 {
                    n if n == lc => cmd.data = body[1..].to_vec(),
                    n if n == lc + 1 => {
                        cmd.data = body[1..=lc].to_vec();
                        let le = body[lc + 1];
                        cmd.le = Some(if le == 0 { 256 } else { u32::from(le) });
                    }
                    _ => return Err(ApduError::BadLength(bytes.len())),
                }
            }
            // `00` then one byte: neither a short Lc (which is never 0) nor an extended length.
            2 => return Err(ApduError::BadLength(bytes.len())),
            3 => {
                let le = u32::from(u16::from_be_bytes([body[1], body[2]]));
                cmd.le = Some(if le == 0 { 65536 } else { le });
            }
            n => {
                let lc = usize::from(u16::from_be_bytes([body[1], body[2]]));
                if n == 3 + lc {
                    cmd.data = body[3..].to_vec();
                } else if n == 3 + lc + 2 {
                    cmd.data = body[3..3 + lc].to_vec();
                    let le = u32::from(u16::from_be_bytes([body[3 + lc], body[4 + lc]]));
                    cmd.le = Some(if le == 0 { 65536 } else { le });
                } else {
                    return Err(ApduError::BadLength(bytes.len()));
                }
            }
        }
        Ok(cmd)
    }
}

/// A response APDU: data then the two status bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Response data.
    pub data: Vec<u8>,
    /// Status word SW1-SW2.
    pub sw: u16,
}

impl Response {
    /// A response with data and status `9000`.
    pub fn ok(data: impl Into<Vec<u8>>) -> Self {
        Self {
            data: data.into(),
            sw: SW_OK,
        }
    }

    /// A response with no data and the given status word.
    pub fn status(sw: u16) -> Self {
        Self {
            data: Vec::new(),
            sw,
        }
    }

    /// Encodes data followed by SW1 SW2.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_be_bytes());
        out
    }

    /// Splits raw response bytes into data and status word.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        if bytes.len() < 2 {
            return Err(ApduError::NoStatus);
        }
        let (data, sw) = bytes.split_at(bytes.len() - 2);
        Ok(Self {
            data: data.to_vec(),
            sw: u16::from_be_bytes([sw[0], sw[1]]),
        })
    }
}

/// A command APDU as hex for traces, with the secret data of VERIFY,
/// CHANGE REFERENCE DATA and RESET RETRY COUNTER replaced by `**`.
pub fn redacted(command: &[u8]) -> String {
    let secret = matches!(
        command.get(1),
        Some(&(INS_VERIFY | INS_CHANGE_REFERENCE_DATA | INS_RESET_RETRY_COUNTER))
    );
    command
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if secret && i >= 5 {
                "**".to_string()
            } else {
                format!("{b:02X}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_round_trip() {
        for cmd in [
            Command::new(0, INS_SELECT, 4, 0),
            Command::new(0, INS_READ_BINARY, 0, 0).with_le(256),
            Command::new(0, INS_VERIFY, 0, 0x81).with_data(vec![0x31; 8]),
            Command::new(0, INS_PSO, 0x9E, 0x9A)
                .with_data(vec![7; 40])
                .with_le(256),
        ] {
            let bytes = cmd.to_bytes().unwrap();
            assert_eq!(Command::parse(&bytes).unwrap(), cmd);
        }
    }

    #[test]
    fn extended_forms_round_trip() {
        for cmd in [
            Command::new(0, INS_READ_BINARY, 0, 0).with_le(65536),
            Command::new(0, INS_PSO, 0x9E, 0x9A).with_data(vec![1; 300]),
            Command::new(0, INS_PSO, 0x9E, 0x9A)
                .with_data(vec![1; 300])
                .with_le(1000),
        ] {
            let bytes = cmd.to_bytes().unwrap();
            assert!(bytes[4] == 0, "extended form starts with 00");
            assert_eq!(Command::parse(&bytes).unwrap(), cmd);
        }
    }

    #[test]
    fn inconsistent_lengths_are_refused() {
        assert_eq!(Command::parse(&[0, 0xA4]), Err(ApduError::TooShort));
        assert_eq!(
            Command::parse(&[0, 0xA4, 4, 0, 5, 1, 2]),
            Err(ApduError::BadLength(7))
        );
        assert_eq!(Response::parse(&[0x90]), Err(ApduError::NoStatus));
        // Found by cargo-fuzz: `00` and one more byte after the header.
        assert_eq!(
            Command::parse(&[0, 0xA4, 4, 0, 0, 7]),
            Err(ApduError::BadLength(6))
        );
    }

    #[test]
    fn traces_hide_pins() {
        let verify = Command::new(0, INS_VERIFY, 0, 0x81)
            .with_data(b"1234\xFF\xFF\xFF\xFF".to_vec())
            .to_bytes()
            .unwrap();
        let t = redacted(&verify);
        assert_eq!(t, "00 20 00 81 08 ** ** ** ** ** ** ** **");
        assert!(!t.contains("31"));
        assert_eq!(redacted(&[0, 0xB0, 0, 0, 0]), "00 B0 00 00 00");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = Command::parse(&bytes);
            let _ = Response::parse(&bytes);
            let _ = redacted(&bytes);
        }

        #[test]
        fn commands_round_trip(ins in 0u8..=255, data in proptest::collection::vec(proptest::num::u8::ANY, 0..400), le in proptest::option::of(1u32..=65536)) {
            let cmd = Command { cla: 0, ins, p1: 1, p2: 2, data, le };
            let cmd = if cmd.data.len() > 255 && cmd.le == Some(256) { Command { le: Some(257), ..cmd } } else { cmd };
            proptest::prop_assert_eq!(Command::parse(&cmd.to_bytes().unwrap()).unwrap(), cmd);
        }
    }

    #[test]
    fn tries_left_status() {
        assert_eq!(sw_tries_left(2), 0x63C2);
    }
}
