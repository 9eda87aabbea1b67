//! Small DER helpers shared by the codecs, and the codec error type that names
//! the field at fault.

use thiserror::Error;

/// A DER encoding or decoding failure, naming the field when known.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DerError {
    /// The ASN.1 layer refused the bytes.
    #[error("DER: {0}")]
    Asn1(String),
    /// A field decoded but its value is not acceptable.
    #[error("{field}: {reason}")]
    Field {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
}

impl DerError {
    /// A field-level error.
    pub fn field(field: &'static str, reason: &'static str) -> Self {
        DerError::Field { field, reason }
    }
}

impl From<asn1_rs::Error> for DerError {
    fn from(e: asn1_rs::Error) -> Self {
        DerError::Asn1(e.to_string())
    }
}

impl From<asn1_rs::Err<asn1_rs::Error>> for DerError {
    fn from(e: asn1_rs::Err<asn1_rs::Error>) -> Self {
        DerError::Asn1(e.to_string())
    }
}

impl From<asn1_rs::SerializeError> for DerError {
    fn from(e: asn1_rs::SerializeError) -> Self {
        DerError::Asn1(e.to_string())
    }
}

/// How deep DER structures may nest (fsed's nest at most 5 levels).
pub const MAX_DEPTH: usize = 16;

/// Checks the TLV structure of DER input before any typed decoding: low tag numbers only,
/// definite lengths in their shortest form, lengths within the input, constructed values
/// nesting at most [`MAX_DEPTH`] levels, BOOLEANs of one octet `00` or `FF`, INTEGERs non-empty
/// and minimal, and nothing after the outer value. The typed decoders run on input that passed:
/// this is the guard that a malformed BOOLEAN or length never reaches a library's assumptions.
pub fn check_structure(bytes: &[u8]) -> Result<(), DerError> {
    let rest = check_value(bytes, 0)?;
    if rest.is_empty() {
        Ok(())
    } else {
        Err(DerError::field("der", "trailing bytes"))
    }
}

/// One DER value: (tag, the whole TLV, its content).
pub type Value<'a> = (u8, &'a [u8], &'a [u8]);

/// Splits DER content into its values. The input must have passed [`check_structure`] (or be
/// this crate's own output).
pub fn values(mut content: &[u8]) -> Result<Vec<Value<'_>>, DerError> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let after = check_value(content, 0)?;
        let whole = &content[..content.len() - after.len()];
        let head = if whole[1] < 0x80 {
            2
        } else {
            2 + usize::from(whole[1] & 0x7F)
        };
        out.push((whole[0], whole, &whole[head..]));
        content = after;
    }
    Ok(out)
}

/// Checks one TLV value at `depth`; returns what follows it.
fn check_value(bytes: &[u8], depth: usize) -> Result<&[u8], DerError> {
    if depth > MAX_DEPTH {
        return Err(DerError::field("der", "nested too deep"));
    }
    let (&tag, rest) = bytes
        .split_first()
        .ok_or(DerError::field("der", "truncated tag"))?;
    if tag & 0x1F == 0x1F {
        return Err(DerError::field("der", "high tag numbers are not used"));
    }
    let (&first, mut rest) = rest
        .split_first()
        .ok_or(DerError::field("der", "truncated length"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 {
            return Err(DerError::field("der", "indefinite length"));
        }
        if n > 4 || rest.len() < n {
            return Err(DerError::field("der", "length out of range"));
        }
        let (octets, after) = rest.split_at(n);
        rest = after;
        if octets[0] == 0 {
            return Err(DerError::field("der", "length with a leading zero octet"));
        }
        let len = octets
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return Err(DerError::field(
                "der",
                "long length form for a short length",
            ));
        }
        len
    };
    if rest.len() < len {
        return Err(DerError::field("der", "length beyond the input"));
    }
    let (content, after) = rest.split_at(len);
    if tag & 0x20 != 0 {
        let mut inner = content;
        while !inner.is_empty() {
            inner = check_value(inner, depth + 1)?;
        }
    } else {
        match tag {
            0x01 if content != [0x00] && content != [0xFF] => {
                return Err(DerError::field("der", "BOOLEAN is one octet, 00 or FF"));
            }
            0x02 => match content {
                [] => return Err(DerError::field("der", "empty INTEGER")),
                [0x00, b, ..] if b & 0x80 == 0 => {
                    return Err(DerError::field("der", "INTEGER not minimal"))
                }
                [0xFF, b, ..] if b & 0x80 != 0 => {
                    return Err(DerError::field("der", "INTEGER not minimal"))
                }
                _ => {}
            },
            _ => {}
        }
    }
    Ok(after)
}

/// A DER writer for the hot encoders: values are written in place and each SEQUENCE's length
/// is patched in once its content is known, so encoding is one pass with no intermediate
/// structures. It writes exactly what the asn1-rs encoders write (the golden files prove it).
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// A writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Writer {
        Writer {
            out: Vec::with_capacity(n),
        }
    }

    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }

    fn length(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = (len as u64).to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (8 - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }

    fn primitive(&mut self, tag: u8, content: &[u8]) {
        self.out.push(tag);
        Writer::length(&mut self.out, content.len());
        self.out.extend_from_slice(content);
    }

    /// A SEQUENCE (or SEQUENCE OF) whose content `f` writes.
    pub fn seq(&mut self, f: impl FnOnce(&mut Writer)) {
        self.constructed(0x30, f);
    }

    /// A constructed value of any tag (`31` SET, `A0` [0] …) whose content `f` writes.
    pub fn constructed(&mut self, tag: u8, f: impl FnOnce(&mut Writer)) {
        let start = self.out.len();
        self.out.extend_from_slice(&[tag, 0]);
        f(self);
        let len = self.out.len() - start - 2;
        if len < 0x80 {
            self.out[start + 1] = len as u8;
        } else {
            let mut head = Vec::with_capacity(9);
            Writer::length(&mut head, len);
            self.out.splice(start + 1..start + 2, head);
        }
    }

    /// A UTF8String.
    pub fn utf8(&mut self, s: &str) {
        self.primitive(0x0C, s.as_bytes());
    }

    /// A non-negative INTEGER, in its minimal two's-complement form.
    pub fn uint(&mut self, v: u64) {
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
        let digits = &bytes[skip..];
        self.out.push(0x02);
        if digits[0] & 0x80 != 0 {
            self.out.push(digits.len() as u8 + 1);
            self.out.push(0);
        } else {
            self.out.push(digits.len() as u8);
        }
        self.out.extend_from_slice(digits);
    }

    /// A BOOLEAN (`FF` or `00`).
    pub fn boolean(&mut self, b: bool) {
        self.primitive(0x01, &[if b { 0xFF } else { 0x00 }]);
    }

    /// An OCTET STRING.
    pub fn octets(&mut self, b: &[u8]) {
        self.primitive(0x04, b);
    }

    /// A primitive value under an implicit tag (`80` for `[0] IMPLICIT`).
    pub fn implicit(&mut self, tag: u8, content: &[u8]) {
        self.primitive(tag, content);
    }

    /// An OBJECT IDENTIFIER from its content octets.
    pub fn oid(&mut self, content: &[u8]) {
        self.primitive(0x06, content);
    }

    /// An INTEGER from its content octets, as they stand (a certificate's serial).
    pub fn integer_bytes(&mut self, content: &[u8]) {
        self.primitive(0x02, content);
    }

    /// Already-encoded DER, copied as is.
    pub fn raw(&mut self, der: &[u8]) {
        self.out.extend_from_slice(der);
    }
}

/// Wraps already-encoded content in a DER SEQUENCE header.
pub fn sequence(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(0x30);
    Writer::length(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// The bytes of an OCTET STRING.
pub fn octets<'a>(o: &'a asn1_rs::OctetString<'_>) -> &'a [u8] {
    o.as_ref()
}

/// A fixed-size byte array from a slice, naming the field when the size is wrong.
pub fn bytes_n<const N: usize>(v: &[u8], field: &'static str) -> Result<[u8; N], DerError> {
    v.try_into()
        .map_err(|_| DerError::field(field, "wrong length"))
}

/// Refuses an encoding that is not the canonical DER of the value it decoded to
/// (`reencoded`): a long length form where a short one fits, a BOOLEAN other than
/// `00`/`FF`, an INTEGER with superfluous leading bytes, a constructed string …
/// Whatever the ASN.1 layer tolerated, only the one DER encoding of a value is accepted.
pub fn require_canonical(
    bytes: &[u8],
    reencoded: &[u8],
    what: &'static str,
) -> Result<(), DerError> {
    if bytes == reencoded {
        Ok(())
    } else {
        Err(DerError::field(what, "not the canonical DER encoding"))
    }
}

/// A DER BOOLEAN for the derived codecs. asn1-rs 0.7's `bool` reads the first content octet
/// before checking the tag or the length, so an empty value where a BOOLEAN is expected would
/// panic; this type checks tag and length first, then takes only `00` and `FF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerBool(pub bool);

fn der_bool(any: &asn1_rs::Any<'_>) -> asn1_rs::Result<bool> {
    any.tag().assert_eq(asn1_rs::Tag::Boolean)?;
    match any.data {
        [0x00] => Ok(false),
        [0xFF] => Ok(true),
        _ => Err(asn1_rs::Error::DerConstraintFailed(
            asn1_rs::DerConstraint::InvalidBoolean,
        )),
    }
}

impl<'a> TryFrom<asn1_rs::Any<'a>> for DerBool {
    type Error = asn1_rs::Error;

    fn try_from(any: asn1_rs::Any<'a>) -> asn1_rs::Result<DerBool> {
        der_bool(&any).map(DerBool)
    }
}

impl asn1_rs::CheckDerConstraints for DerBool {
    fn check_constraints(any: &asn1_rs::Any) -> asn1_rs::Result<()> {
        der_bool(any).map(|_| ())
    }
}

impl asn1_rs::DerAutoDerive for DerBool {}

impl asn1_rs::Tagged for DerBool {
    const TAG: asn1_rs::Tag = asn1_rs::Tag::Boolean;
}

impl asn1_rs::ToDer for DerBool {
    fn to_der_len(&self) -> asn1_rs::Result<usize> {
        self.0.to_der_len()
    }

    fn write_der_header(&self, writer: &mut dyn std::io::Write) -> asn1_rs::SerializeResult<usize> {
        self.0.write_der_header(writer)
    }

    fn write_der_content(
        &self,
        writer: &mut dyn std::io::Write,
    ) -> asn1_rs::SerializeResult<usize> {
        self.0.write_der_content(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asn1_rs::{FromDer, ToDer};

    #[test]
    fn der_bool_refuses_what_asn1_rs_bool_would_panic_on() {
        for bad in [
            &[0x01, 0x00][..],
            &[0x0C, 0x00],
            &[0x30, 0x00],
            &[0x01, 0x01, 0x01],
        ] {
            assert!(DerBool::from_der(bad).is_err(), "{bad:02X?}");
        }
        for v in [false, true] {
            let der = DerBool(v).to_der_vec().unwrap();
            assert_eq!(DerBool::from_der(&der).unwrap().1, DerBool(v));
        }
    }

    #[test]
    fn structure_check_refuses_non_canonical_forms() {
        let ok = [0x30, 0x06, 0x02, 0x01, 0x05, 0x01, 0x01, 0xFF];
        check_structure(&ok).unwrap();
        let bad: [&[u8]; 9] = [
            &[0x30, 0x81, 0x06, 0x02, 0x01, 0x05, 0x01, 0x01, 0xFF], // long form, short length
            &[0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00],             // indefinite length
            &[0x30, 0x07, 0x02, 0x02, 0x00, 0x05, 0x01, 0x01, 0xFF], // INTEGER 00 05
            &[0x30, 0x06, 0x02, 0x01, 0x05, 0x01, 0x01, 0x01],       // BOOLEAN 01
            &[0x30, 0x05, 0x02, 0x00, 0x01, 0x01, 0xFF],             // empty INTEGER
            &[0x30, 0x06, 0x02, 0x01, 0x05, 0x01, 0x01],             // truncated
            &[0x30, 0x06, 0x02, 0x01, 0x05, 0x01, 0x01, 0xFF, 0x00], // trailing byte
            &[0x3F, 0x01, 0x00],                                     // high tag number
            &[0x30, 0x82, 0x00, 0x06, 0x02, 0x01, 0x05, 0x01, 0x01, 0xFF], // leading zero length
        ];
        for b in bad {
            assert!(check_structure(b).is_err(), "{b:02X?}");
        }
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep = sequence(&deep);
        }
        assert!(check_structure(&deep).is_err());
    }
}
