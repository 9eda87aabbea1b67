//! The simple BER-TLV records of fsed's card files: one-byte tags, lengths in
//! short form or `81 xx` / `82 xx xx` (ISO 7816-4 §5.2).

use thiserror::Error;

/// A malformed TLV record.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TlvError {
    /// The buffer ends inside a tag, length or value.
    #[error("TLV truncated at byte {0}")]
    Truncated(usize),
    /// A length form fsed's cards never use.
    #[error("unsupported TLV length form 0x{0:02X}")]
    BadLength(u8),
    /// A mandatory tag is absent.
    #[error("tag 0x{0:02X} missing")]
    Missing(u8),
    /// A value is not what its tag promises.
    #[error("tag 0x{tag:02X}: {reason}")]
    BadValue {
        /// The tag at fault.
        tag: u8,
        /// Why the value is refused.
        reason: String,
    },
}

/// Appends one TLV record to `out`.
pub fn push(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xFF {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        // Card files are far below 64 KiB; larger values are truncated to the limit by design of the callers.
        let len = len.min(0xFFFF) as u16;
        out.push(0x82);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(value);
}

/// Parses a buffer into its `(tag, value)` records, in order.
///
/// Trailing `0x00` or `0xFF` padding (unused file space) ends the parse.
pub fn parse(mut buf: &[u8]) -> Result<Vec<(u8, &[u8])>, TlvError> {
    let total = buf.len();
    let mut out = Vec::new();
    while let Some(&tag) = buf.first() {
        if tag == 0x00 || tag == 0xFF {
            break;
        }
        let at = total - buf.len();
        let (len, hdr) = match buf.get(1) {
            None => return Err(TlvError::Truncated(at)),
            Some(&l) if l < 0x80 => (usize::from(l), 2),
            Some(0x81) => (usize::from(*buf.get(2).ok_or(TlvError::Truncated(at))?), 3),
            Some(0x82) => {
                let hi = *buf.get(2).ok_or(TlvError::Truncated(at))?;
                let lo = *buf.get(3).ok_or(TlvError::Truncated(at))?;
                (usize::from(u16::from_be_bytes([hi, lo])), 4)
            }
            Some(&l) => return Err(TlvError::BadLength(l)),
        };
        let value = buf.get(hdr..hdr + len).ok_or(TlvError::Truncated(at))?;
        out.push((tag, value));
        buf = &buf[hdr + len..];
    }
    Ok(out)
}

/// The records of a parsed buffer, looked up by tag.
pub struct Records<'a>(Vec<(u8, &'a [u8])>);

impl<'a> Records<'a> {
    /// Parses `buf`.
    pub fn new(buf: &'a [u8]) -> Result<Self, TlvError> {
        parse(buf).map(Records)
    }

    /// The first value with this tag, if any.
    pub fn get(&self, tag: u8) -> Option<&'a [u8]> {
        self.0.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }

    /// Every value with this tag, in order.
    pub fn all(&self, tag: u8) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.0
            .iter()
            .filter(move |(t, _)| *t == tag)
            .map(|(_, v)| *v)
    }

    /// The value of a mandatory tag.
    pub fn bytes(&self, tag: u8) -> Result<&'a [u8], TlvError> {
        self.get(tag).ok_or(TlvError::Missing(tag))
    }

    /// The value of a mandatory tag, as UTF-8 text.
    pub fn text(&self, tag: u8) -> Result<String, TlvError> {
        let v = self.bytes(tag)?;
        String::from_utf8(v.to_vec()).map_err(|_| TlvError::BadValue {
            tag,
            reason: "not UTF-8".into(),
        })
    }

    /// The value of a mandatory one-byte tag.
    pub fn byte(&self, tag: u8) -> Result<u8, TlvError> {
        match self.bytes(tag)? {
            [b] => Ok(*b),
            _ => Err(TlvError::BadValue {
                tag,
                reason: "expected one byte".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_length_forms() {
        let mut buf = Vec::new();
        push(&mut buf, 0x80, b"abc");
        push(&mut buf, 0x81, &[7; 200]);
        push(&mut buf, 0x82, &[9; 300]);
        buf.extend_from_slice(&[0xFF; 4]);
        let recs = Records::new(&buf).unwrap();
        assert_eq!(recs.text(0x80).unwrap(), "abc");
        assert_eq!(recs.bytes(0x81).unwrap().len(), 200);
        assert_eq!(recs.bytes(0x82).unwrap().len(), 300);
        assert_eq!(recs.bytes(0x83), Err(TlvError::Missing(0x83)));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            if let Ok(recs) = Records::new(&bytes) {
                for tag in 0..=255u8 {
                    let _ = recs.text(tag);
                    let _ = recs.byte(tag);
                }
            }
        }
    }

    #[test]
    fn truncated_is_an_error() {
        assert_eq!(parse(&[0x80, 5, 1, 2]), Err(TlvError::Truncated(0)));
        assert_eq!(parse(&[0x80, 0x84, 1]), Err(TlvError::BadLength(0x84)));
    }
}
