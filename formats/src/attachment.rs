//! Supporting documents (SCOR): a PDF, JPEG or PNG attached to a care sheet (a prescription
//! for an auxiliary's act, the paper sheet of degraded mode).
//!
//! - [`inspect`]: the type is found from the bytes, never from a file name (`%PDF-` → PDF,
//!   `FF D8 FF` → JPEG, the PNG signature → PNG; anything else is refused), and an image's
//!   resolution is read from the bytes (PNG `pHYs`, JPEG JFIF `APP0` density, or the EXIF
//!   `XResolution`/`YResolution` of IFD0). An image without a resolution, or below
//!   [`MIN_DPI`] on either axis, is refused. A PDF has no resolution check (its pages may mix
//!   text and images of any resolution); its header and its `%%EOF` marker (within the last
//!   1024 bytes) must be there.
//! - [`AttachmentRef`]: what the signed lot header carries for each document (its hash), so
//!   the CPS signature over the header covers the documents.
//! - [`AttachmentLot`]: the documents' bytes, sent after the lot whose header references them.
//!
//! Per `formats/asn1/fsed.asn` (`AttachmentRef`, `AttachmentLot`).

use asn1_rs::{DerSequence, FromDer, OctetString, Tagged, ToDer, ToDerSequence};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::der::{bytes_n, DerError};

/// The least resolution of an image, in dots per inch, on each axis.
pub const MIN_DPI: u32 = 150;
/// Version of the `AttachmentLot` encoding.
pub const ATTACHMENT_LOT_VERSION: u32 = 1;

/// What a document is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentKind {
    /// A prescription (for an auxiliary's act).
    Prescription,
    /// The paper sheet of a degraded-mode sheet.
    DegradedPaper,
    /// Anything else.
    Other,
}

impl AttachmentKind {
    /// The INTEGER of the DER encoding.
    pub fn code(self) -> u32 {
        match self {
            AttachmentKind::Prescription => 0,
            AttachmentKind::DegradedPaper => 1,
            AttachmentKind::Other => 2,
        }
    }

    /// From the DER INTEGER.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(AttachmentKind::Prescription),
            1 => Some(AttachmentKind::DegradedPaper),
            2 => Some(AttachmentKind::Other),
            _ => None,
        }
    }

    /// The API name (`prescription`, `degraded_paper`, `other`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentKind::Prescription => "prescription",
            AttachmentKind::DegradedPaper => "degraded_paper",
            AttachmentKind::Other => "other",
        }
    }

    /// From the API name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            AttachmentKind::Prescription,
            AttachmentKind::DegradedPaper,
            AttachmentKind::Other,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// The media types accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/pdf`.
    Pdf,
    /// `image/jpeg`.
    Jpeg,
    /// `image/png`.
    Png,
}

impl MediaType {
    /// The MIME name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Pdf => "application/pdf",
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
        }
    }

    /// The type the bytes start with, if any.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"%PDF-") {
            Some(MediaType::Pdf)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(MediaType::Jpeg)
        } else if bytes.starts_with(&PNG_SIGNATURE) {
            Some(MediaType::Png)
        } else {
            None
        }
    }
}

/// Why a document is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// Not a PDF, JPEG or PNG.
    Type,
    /// An image without a resolution, or below [`MIN_DPI`].
    Resolution,
    /// Empty or larger than the limit.
    Size,
    /// Starts as a known type but its structure is broken.
    Malformed,
}

impl RefusalReason {
    /// The API name (`type`, `resolution`, `size`, `malformed`).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Type => "type",
            RefusalReason::Resolution => "resolution",
            RefusalReason::Size => "size",
            RefusalReason::Malformed => "malformed",
        }
    }
}

/// A refused document: the reason and a readable detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Refusal {
    /// The reason.
    pub reason: RefusalReason,
    /// A readable detail.
    pub detail: String,
}

fn refuse(reason: RefusalReason, detail: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        detail: detail.into(),
    }
}

/// What was found in an accepted document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// Its type, from its bytes.
    pub media_type: MediaType,
    /// Resolution (x, y) in dots per inch for an image; `None` for a PDF.
    pub dpi: Option<(u32, u32)>,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// Checks a document: size (1 ..= `max_bytes`), type from the bytes, and an image's
/// resolution (≥ [`MIN_DPI`] on both axes) or a PDF's header and `%%EOF`.
pub fn inspect(bytes: &[u8], max_bytes: u64) -> Result<Inspected, Refusal> {
    if bytes.is_empty() {
        return Err(refuse(RefusalReason::Size, "empty"));
    }
    if bytes.len() as u64 > max_bytes {
        return Err(refuse(
            RefusalReason::Size,
            format!("{} bytes, more than {max_bytes}", bytes.len()),
        ));
    }
    let media_type = MediaType::sniff(bytes).ok_or_else(|| {
        refuse(
            RefusalReason::Type,
            "not a PDF, JPEG or PNG (the type comes from the bytes)",
        )
    })?;
    let dpi = match media_type {
        MediaType::Pdf => {
            let tail = &bytes[bytes.len().saturating_sub(1024)..];
            if !tail.windows(5).any(|w| w == b"%%EOF") {
                return Err(refuse(RefusalReason::Malformed, "PDF without %%EOF"));
            }
            None
        }
        MediaType::Png => Some(png_dpi(bytes)?),
        MediaType::Jpeg => Some(jpeg_dpi(bytes)?),
    };
    if let Some((x, y)) = dpi {
        if x < MIN_DPI || y < MIN_DPI {
            return Err(refuse(
                RefusalReason::Resolution,
                format!("{x}×{y} dpi, less than {MIN_DPI}"),
            ));
        }
    }
    Ok(Inspected {
        media_type,
        dpi,
        sha256: Sha256::digest(bytes).into(),
    })
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Pixels per metre to dots per inch, rounded: dpi = ppm × 0.0254.
fn ppm_to_dpi(ppm: u32) -> u32 {
    ((u64::from(ppm) * 254 + 5_000) / 10_000) as u32
}

/// The `pHYs` resolution of a PNG: its chunks are walked from `IHDR` to the first `IDAT` (where
/// the standard puts `pHYs` before).
fn png_dpi(bytes: &[u8]) -> Result<(u32, u32), Refusal> {
    let mut rest = &bytes[PNG_SIGNATURE.len()..];
    let mut first = true;
    loop {
        if rest.len() < 12 {
            return Err(refuse(RefusalReason::Malformed, "PNG chunks cut short"));
        }
        let len = be32(rest) as usize;
        let kind = &rest[4..8];
        if rest.len() - 12 < len {
            return Err(refuse(
                RefusalReason::Malformed,
                "PNG chunk beyond the file",
            ));
        }
        let data = &rest[8..8 + len];
        if first && (kind != b"IHDR" || len != 13) {
            return Err(refuse(RefusalReason::Malformed, "PNG without IHDR first"));
        }
        first = false;
        match kind {
            b"pHYs" if len == 9 => {
                return match data[8] {
                    1 => Ok((ppm_to_dpi(be32(data)), ppm_to_dpi(be32(&data[4..])))),
                    _ => Err(refuse(
                        RefusalReason::Resolution,
                        "PNG pHYs gives an aspect ratio only (unit not the metre)",
                    )),
                }
            }
            b"IDAT" | b"IEND" => return Err(refuse(RefusalReason::Resolution, "PNG without pHYs")),
            _ => rest = &rest[12 + len..],
        }
    }
}

/// A JPEG's resolution: the JFIF `APP0` density when its unit is the inch (1) or the
/// centimetre (2, dpi = dpcm × 2.54 rounded), else the EXIF IFD0 resolution. Segments are
/// walked from SOI to SOS.
fn jpeg_dpi(bytes: &[u8]) -> Result<(u32, u32), Refusal> {
    let mut rest = &bytes[2..];
    let mut exif = None;
    loop {
        if rest.len() < 4 || rest[0] != 0xFF {
            return Err(refuse(RefusalReason::Malformed, "JPEG segments cut short"));
        }
        let marker = rest[1];
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if len < 2 || rest.len() - 2 < len {
            return Err(refuse(
                RefusalReason::Malformed,
                "JPEG segment beyond the file",
            ));
        }
        let data = &rest[4..2 + len];
        if marker == 0xE0 && data.len() >= 12 && data.starts_with(b"JFIF\0") {
            let (x, y) = (
                u32::from(u16::from_be_bytes([data[8], data[9]])),
                u32::from(u16::from_be_bytes([data[10], data[11]])),
            );
            match data[7] {
                1 => return Ok((x, y)),
                2 => return Ok(((x * 254 + 50) / 100, (y * 254 + 50) / 100)),
                _ => {}
            }
        }
        if marker == 0xE1 && data.starts_with(b"Exif\0\0") && exif.is_none() {
            exif = exif_dpi(&data[6..]);
        }
        rest = &rest[2 + len..];
    }
    exif.ok_or_else(|| refuse(RefusalReason::Resolution, "JPEG without a resolution"))
}

/// The resolution in EXIF IFD0 (`XResolution` 0x011A, `YResolution` 0x011B, RATIONAL;
/// `ResolutionUnit` 0x0128: 2 inch (default), 3 centimetre). `None` when it is not there or not
/// this simple shape.
fn exif_dpi(tiff: &[u8]) -> Option<(u32, u32)> {
    let little = match tiff.get(..4)? {
        [b'I', b'I', 42, 0] => true,
        [b'M', b'M', 0, 42] => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u32> {
        let b = tiff.get(at..at + 2)?;
        Some(u32::from(if little {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        }))
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = u16_at(ifd)? as usize;
    let (mut x, mut y, mut unit) = (None, None, 2);
    for i in 0..count.min(64) {
        let entry = ifd.checked_add(2 + 12 * i)?;
        let (tag, kind) = (u16_at(entry)?, u16_at(entry + 2)?);
        let rational = || -> Option<u32> {
            let at = u32_at(entry + 8)? as usize;
            let (num, den) = (u32_at(at)?, u32_at(at + 4)?);
            (den != 0).then(|| num / den)
        };
        match (tag, kind) {
            (0x011A, 5) => x = rational(),
            (0x011B, 5) => y = rational(),
            (0x0128, 3) => unit = u16_at(entry + 8)?,
            _ => {}
        }
    }
    let (x, y) = (x?, y?);
    match unit {
        2 => Some((x, y)),
        3 => Some(((x * 254 + 50) / 100, (y * 254 + 50) / 100)),
        _ => None,
    }
}

/// What a signed lot header says of one document: `AttachmentRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRef {
    /// The number of the sheet it supports.
    pub sheet_number: u64,
    /// What it is for.
    pub kind: AttachmentKind,
    /// Its media type (found from its bytes).
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes.
    pub sha256: [u8; 32],
}

#[derive(DerSequence, ToDerSequence)]
pub(crate) struct RefDer<'a> {
    sheet_number: u64,
    kind: u32,
    media_type: String,
    size: u64,
    sha256: OctetString<'a>,
}

impl AttachmentRef {
    pub(crate) fn as_der(&self) -> RefDer<'_> {
        RefDer {
            sheet_number: self.sheet_number,
            kind: self.kind.code(),
            media_type: self.media_type.clone(),
            size: self.size,
            sha256: OctetString::new(&self.sha256),
        }
    }

    pub(crate) fn from_der_struct(r: RefDer<'_>) -> Result<Self, DerError> {
        Ok(AttachmentRef {
            sheet_number: r.sheet_number,
            kind: AttachmentKind::from_code(r.kind)
                .ok_or(DerError::field("attachment.kind", "unknown kind"))?,
            media_type: r.media_type,
            size: r.size,
            sha256: bytes_n(r.sha256.as_ref(), "attachment.sha256")?,
        })
    }

    /// The DER of a `SEQUENCE OF AttachmentRef`.
    pub(crate) fn list_to_der(refs: &[AttachmentRef]) -> Result<Vec<u8>, DerError> {
        let list: Vec<RefDer> = refs.iter().map(AttachmentRef::as_der).collect();
        Ok(list.to_der_vec()?)
    }

    /// Decodes a `SEQUENCE OF AttachmentRef` (whole input).
    pub(crate) fn list_from_der(bytes: &[u8]) -> Result<Vec<AttachmentRef>, DerError> {
        let (rest, list) = <Vec<RefDer>>::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("attachments", "trailing bytes"));
        }
        list.into_iter()
            .map(AttachmentRef::from_der_struct)
            .collect()
    }
}

/// One document in an attachment lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentEntry {
    /// Its reference, as the signed header carries it.
    pub reference: AttachmentRef,
    /// Its bytes.
    pub content: Vec<u8>,
}

/// The documents referenced by a signed lot's header: `AttachmentLot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentLot {
    /// `"<practitionerId>-A<number, 8 digits>"`.
    pub lot_id: String,
    /// National id of the practitioner.
    pub practitioner_id: String,
    /// Destination organism code.
    pub destination: String,
    /// The FSE lot whose signed header references these documents.
    pub signed_lot_id: String,
    /// The documents.
    pub entries: Vec<AttachmentEntry>,
}

#[derive(DerSequence, ToDerSequence)]
struct EntryDer<'a> {
    reference: RefDer<'a>,
    content: OctetString<'a>,
}

#[derive(DerSequence, ToDerSequence)]
struct LotDer<'a> {
    version: u32,
    lot_id: String,
    practitioner_id: String,
    destination: String,
    signed_lot_id: String,
    entries: Vec<EntryDer<'a>>,
}

impl AttachmentLot {
    /// The id of attachment lot `number` of a practitioner.
    pub fn id(practitioner_id: &str, number: u64) -> String {
        format!("{practitioner_id}-A{number:08}")
    }

    /// DER encoding.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        let der = LotDer {
            version: ATTACHMENT_LOT_VERSION,
            lot_id: self.lot_id.clone(),
            practitioner_id: self.practitioner_id.clone(),
            destination: self.destination.clone(),
            signed_lot_id: self.signed_lot_id.clone(),
            entries: self
                .entries
                .iter()
                .map(|e| EntryDer {
                    reference: e.reference.as_der(),
                    content: OctetString::new(&e.content),
                })
                .collect(),
        };
        Ok(der.to_der_vec()?)
    }

    /// DER decoding, strict (canonical only).
    pub fn from_der(bytes: &[u8]) -> Result<Self, DerError> {
        crate::der::check_structure(bytes)?;
        let (rest, l) = LotDer::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("attachment_lot", "trailing bytes"));
        }
        if l.version != ATTACHMENT_LOT_VERSION {
            return Err(DerError::field(
                "attachment_lot.version",
                "unsupported attachment lot version",
            ));
        }
        let lot = AttachmentLot {
            lot_id: l.lot_id,
            practitioner_id: l.practitioner_id,
            destination: l.destination,
            signed_lot_id: l.signed_lot_id,
            entries: l
                .entries
                .into_iter()
                .map(|e| {
                    Ok(AttachmentEntry {
                        reference: AttachmentRef::from_der_struct(e.reference)?,
                        content: e.content.as_ref().to_vec(),
                    })
                })
                .collect::<Result<_, DerError>>()?,
        };
        crate::der::require_canonical(bytes, &lot.to_der()?, "attachment_lot")?;
        Ok(lot)
    }

    /// The Merkle root its ARL echoes: SHA-256 of its DER (an attachment lot has no tree).
    pub fn digest(der: &[u8]) -> [u8; 32] {
        Sha256::digest(der).into()
    }
}

#[cfg(test)]
#[path = "attachment_tests.rs"]
pub(crate) mod tests;
