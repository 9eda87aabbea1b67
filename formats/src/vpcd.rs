//! The vpcd wire protocol (virtual smart-card reader driver of the vsmartcard
//! project, Debian package `vsmartcard-vpcd`): how a virtual card and a
//! reader talk over TCP (or, between fsed's embedded virtual reader and
//! simulated cards on one machine, over a Unix socket: [`Endpoint`]).
//!
//! Every message is a 2-byte big-endian length followed by that many bytes.
//! A 1-byte message from the reader is a control frame ([`Control`]);
//! anything longer is a command APDU, answered by a response APDU. The
//! reader side listens (pcscd's driver on ports 35963 + slot); the card side
//! connects. fsed's embedded virtual reader speaks the same protocol so the
//! same simulated cards serve with or without pcscd.

/// Port of vpcd slot 0 (the CPS by convention); slot `n` listens on `VPCD_PORT + n`.
pub const VPCD_PORT: u16 = 35963;

/// Where a reader slot is reached: a TCP address, where pcscd's vpcd driver listens, or a Unix
/// socket (written `unix:/path`) carrying the same frames, for simulated cards on the machine
/// of an embedded virtual reader: no TCP stack on either side of every APDU.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `host:port`.
    Tcp(std::net::SocketAddr),
    /// `unix:/path`.
    Unix(std::path::PathBuf),
}

/// The prefix of a Unix socket [`Endpoint`].
pub const UNIX_PREFIX: &str = "unix:";

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Endpoint, String> {
        match s.strip_prefix(UNIX_PREFIX) {
            Some("") => Err(format!("{s}: a Unix socket needs a path (unix:/path)")),
            Some(path) => Ok(Endpoint::Unix(path.into())),
            None => s.parse().map(Endpoint::Tcp).map_err(|_| {
                format!("{s}: an IP address and port (127.0.0.1:35963) or unix:/path")
            }),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
        }
    }
}

impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A control frame sent by the reader to the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Power off.
    PowerOff,
    /// Power on.
    PowerOn,
    /// Reset (warm).
    Reset,
    /// Ask for the ATR.
    GetAtr,
}

impl Control {
    /// The control byte.
    pub fn byte(self) -> u8 {
        match self {
            Control::PowerOff => 0x00,
            Control::PowerOn => 0x01,
            Control::Reset => 0x02,
            Control::GetAtr => 0x04,
        }
    }

    /// Parses a 1-byte frame.
    pub fn from_byte(b: u8) -> Option<Control> {
        match b {
            0x00 => Some(Control::PowerOff),
            0x01 => Some(Control::PowerOn),
            0x02 => Some(Control::Reset),
            0x04 => Some(Control::GetAtr),
            _ => None,
        }
    }
}

/// A decoded reader-to-card message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A control frame.
    Control(Control),
    /// An unknown 1-byte control frame.
    UnknownControl(u8),
    /// A command APDU.
    Apdu(Vec<u8>),
}

impl Frame {
    /// Classifies a received payload.
    pub fn classify(payload: &[u8]) -> Frame {
        match payload {
            [b] => Control::from_byte(*b)
                .map(Frame::Control)
                .unwrap_or(Frame::UnknownControl(*b)),
            other => Frame::Apdu(other.to_vec()),
        }
    }
}

/// Prefixes a payload with its 2-byte length; `None` when over 65535 bytes.
pub fn encode(payload: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(payload.len()).ok()?;
    let mut out = Vec::with_capacity(payload.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// Takes the first complete message out of `buf` (bytes read from the link so far) and
/// returns its payload; `None` while the message is still incomplete. A read may bring a
/// length and its payload together, or split them anywhere.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let [hi, lo, rest @ ..] = buf.as_slice() else {
        return None;
    };
    let n = usize::from(u16::from_be_bytes([*hi, *lo]));
    let payload = rest.get(..n)?.to_vec();
    buf.drain(..2 + n);
    Some(payload)
}

#[cfg(test)]
mod tests {

    #[test]
    fn endpoints_read_and_write_as_text() {
        for text in [
            "127.0.0.1:35963",
            "[::1]:35964",
            "unix:/run/fsed/cps.sock",
            "unix:rel",
        ] {
            let e: Endpoint = text.parse().unwrap();
            assert_eq!(e.to_string(), text);
        }
        assert_eq!(
            "unix:/a".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/a".into())
        );
        for bad in ["unix:", "localhost:35963", "127.0.0.1", ""] {
            let why = bad.parse::<Endpoint>().unwrap_err();
            assert!(why.starts_with(bad), "{why}");
        }
        let json = serde_json::to_string(&Endpoint::Unix("/s".into())).unwrap();
        assert_eq!(json, "\"unix:/s\"");
        assert!(serde_json::from_str::<Endpoint>("\"nowhere\"").is_err());
    }
    use super::*;

    #[test]
    fn frames_are_taken_whole_however_the_bytes_arrive() {
        let mut wire = encode(&[0x00, 0xA4]).unwrap();
        wire.extend(encode(&[4]).unwrap());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in wire {
            buf.push(b);
            if let Some(f) = take_frame(&mut buf) {
                got.push(f);
            }
        }
        assert_eq!(got, vec![vec![0x00, 0xA4], vec![4]]);
        assert!(buf.is_empty());
    }

    #[test]
    fn frames() {
        assert_eq!(Frame::classify(&[4]), Frame::Control(Control::GetAtr));
        assert_eq!(Frame::classify(&[9]), Frame::UnknownControl(9));
        assert_eq!(
            Frame::classify(&[0, 0xA4, 4, 0]),
            Frame::Apdu(vec![0, 0xA4, 4, 0])
        );
        assert_eq!(encode(&[1, 2, 3]).unwrap(), vec![0, 3, 1, 2, 3]);
        assert!(encode(&vec![0; 70000]).is_none());
    }
}
