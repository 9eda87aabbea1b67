//! The vpcd wire protocol (virtual smart-card reader driver of the vsmartcard
//! project, Debian package `vsmartcard-vpcd`): how a virtual card and a
//! reader talk over TCP (or, between fsed's embedded virtual reader and
//! simulated cards on one machine, over a Unix socket: [`Endpoint`]).
//!
//! Every message is a 2-byte big-endian length followed by that many bytes.
//! A 1-byte message from the reader is a control frame ([`Control`]);
//! anything longer is a command APDU, answered by a response APDU. The
//! framing is ambiguous: pcscd hands a 1-byte APDU to the vpcd driver, which
//! sends it as a 1-byte message, the very form of a control frame. The card
//! side tells them apart as [`CardLink`] says, so that such an APDU is
//! answered `6700` (wrong length) and never wedges the reader. The
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

/// How long the card side waits, after a 1-byte `00`, `01` or `02`, for the reader's next
/// message before taking it for a 1-byte APDU: pcscd's vpcd driver follows a power-on or a
/// reset at once with `04` (the ATR), and polls the card's presence with `04` every 400 ms
/// after a power-off; a 1-byte APDU instead leaves it waiting for the answer.
pub const CONTROL_SILENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// What the card side does with a message from the reader ([`CardLink`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardStep {
    /// A power-off, power-on or reset, or a 1-byte APDU: wait at most [`CONTROL_SILENCE`]
    /// for the next message, then call [`CardLink::silence`] if none came.
    Wait,
    /// Answer with the card's ATR.
    Atr,
    /// Answer with this status word alone.
    Status(u16),
    /// Have the card process this command APDU and send its answer.
    Apdu(Vec<u8>),
}

/// The card side's reading of the reader's messages. A control frame is only a control when
/// the driver sends it as one:
///
/// - `00` (off), `01` (on) and `02` (reset) are fire-and-forget: the driver sends something
///   else soon after (`04` at once after `01`/`02`; a presence poll `04` within 400 ms after
///   `00`), whereas a 1-byte APDU leaves it waiting for the answer. The card applies such a
///   control only when the next message comes; after [`CONTROL_SILENCE`] without one it
///   answers `6700` instead.
/// - `04` is answered with the ATR when the ATR is due: on a new link, after a power-on, a
///   power-off or a reset. Otherwise it is a presence poll (any answer will do: the driver
///   only checks one comes) or a 1-byte APDU, and both get `6700`.
/// - Any other 1-byte message is an APDU too short to be one: `6700`.
#[derive(Debug, Clone)]
pub struct CardLink {
    atr_due: bool,
    pending: Option<Control>,
}

impl Default for CardLink {
    fn default() -> Self {
        CardLink {
            atr_due: true,
            pending: None,
        }
    }
}

impl CardLink {
    /// A new link: the ATR is due.
    pub fn new() -> CardLink {
        CardLink::default()
    }

    /// Reads the next message: the control it confirms (the one before it, to apply to the
    /// card first: power-off and reset clear its state), and what to do with this one.
    pub fn frame(&mut self, payload: &[u8]) -> (Option<Control>, CardStep) {
        let confirmed = self.pending.take();
        if let Some(Control::PowerOff | Control::PowerOn | Control::Reset) = confirmed {
            self.atr_due = true;
        }
        let step = match Frame::classify(payload) {
            Frame::Control(c @ (Control::PowerOff | Control::PowerOn | Control::Reset)) => {
                self.pending = Some(c);
                CardStep::Wait
            }
            Frame::Control(Control::GetAtr) if std::mem::take(&mut self.atr_due) => CardStep::Atr,
            Frame::Control(Control::GetAtr) | Frame::UnknownControl(_) => {
                CardStep::Status(crate::apdu::SW_WRONG_LENGTH)
            }
            Frame::Apdu(apdu) => CardStep::Apdu(apdu),
        };
        (confirmed, step)
    }

    /// No message came within [`CONTROL_SILENCE`] after a [`CardStep::Wait`]: the 1-byte
    /// message was an APDU, and its answer is this status word (`6700`, wrong length).
    pub fn silence(&mut self) -> u16 {
        self.pending = None;
        crate::apdu::SW_WRONG_LENGTH
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
    fn one_byte_apdus_are_told_from_control_frames() {
        let mut link = CardLink::new();
        // pcscd's driver: a presence poll on the new link, then power-on and its ATR.
        assert_eq!(link.frame(&[4]), (None, CardStep::Atr));
        assert_eq!(link.frame(&[1]), (None, CardStep::Wait));
        assert_eq!(
            link.frame(&[4]),
            (Some(Control::PowerOn), CardStep::Atr),
            "the ATR after a power-on"
        );
        // Presence polls while powered: any answer will do; 6700 is what a 1-byte APDU `04` gets.
        assert_eq!(link.frame(&[4]), (None, CardStep::Status(0x6700)));
        // A 1-byte APDU `00`: nothing follows, the driver waits for its answer.
        assert_eq!(link.frame(&[0]), (None, CardStep::Wait));
        assert_eq!(link.silence(), 0x6700);
        assert_eq!(
            link.frame(&[0x00, 0xA4, 0x04, 0x00]),
            (None, CardStep::Apdu(vec![0x00, 0xA4, 0x04, 0x00])),
            "the APDU after it reaches the card, no control applied"
        );
        // A real power-off: the next presence poll confirms it and gets the ATR.
        assert_eq!(link.frame(&[0]), (None, CardStep::Wait));
        assert_eq!(link.frame(&[4]), (Some(Control::PowerOff), CardStep::Atr));
        // A reset then its ATR; an unknown 1-byte message is a 1-byte APDU.
        assert_eq!(link.frame(&[2]), (None, CardStep::Wait));
        assert_eq!(link.frame(&[4]), (Some(Control::Reset), CardStep::Atr));
        assert_eq!(link.frame(&[9]), (None, CardStep::Status(0x6700)));
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
