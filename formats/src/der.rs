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

/// Wraps already-encoded content in a DER SEQUENCE header.
pub fn sequence(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(0x30);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
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
