use super::*;

/// A PNG chunk: length, type, data, and a CRC (not checked here, zeroes).
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    c.extend_from_slice(&[0; 4]);
    c
}

/// A minimal PNG (1×1) with a `pHYs` chunk of `ppm` pixels per metre on x and y (unit `unit`),
/// or none.
fn png(phys: Option<(u32, u32, u8)>) -> Vec<u8> {
    let mut p = PNG_SIGNATURE.to_vec();
    p.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
    if let Some((x, y, unit)) = phys {
        let mut d = x.to_be_bytes().to_vec();
        d.extend(y.to_be_bytes());
        d.push(unit);
        p.extend(chunk(b"pHYs", &d));
    }
    p.extend(chunk(b"IDAT", &[0x78, 0x9C]));
    p.extend(chunk(b"IEND", &[]));
    p
}

/// A minimal JPEG: SOI, a JFIF APP0 with `units` and densities, SOS, EOI.
fn jpeg(units: u8, x: u16, y: u16) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    j.extend_from_slice(b"JFIF\0");
    j.extend_from_slice(&[1, 2, units]);
    j.extend(x.to_be_bytes());
    j.extend(y.to_be_bytes());
    j.extend_from_slice(&[0, 0]);
    j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9]);
    j
}

/// A JPEG whose only resolution is an EXIF IFD0 (little endian) of `x`/`y` per inch.
fn jpeg_exif(x: u32, y: u32) -> Vec<u8> {
    // TIFF: header (8) + IFD count (2) + 2 entries (24) + next IFD (4) = 38, then 2 rationals.
    let mut t = b"II\x2A\x00".to_vec();
    t.extend(8u32.to_le_bytes());
    t.extend(2u16.to_le_bytes());
    for (tag, at) in [(0x011Au16, 38u32), (0x011B, 46)] {
        t.extend(tag.to_le_bytes());
        t.extend(5u16.to_le_bytes());
        t.extend(1u32.to_le_bytes());
        t.extend(at.to_le_bytes());
    }
    t.extend(0u32.to_le_bytes());
    for v in [x, y] {
        t.extend(v.to_le_bytes());
        t.extend(1u32.to_le_bytes());
    }
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(t);
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xE1];
    j.extend(((app1.len() + 2) as u16).to_be_bytes());
    j.extend(app1);
    j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9]);
    j
}

fn reason(bytes: &[u8]) -> RefusalReason {
    inspect(bytes, 1 << 20).unwrap_err().reason
}

#[test]
fn the_type_comes_from_the_bytes() {
    let pdf = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n";
    let i = inspect(pdf, 1000).unwrap();
    assert_eq!(i.media_type, MediaType::Pdf);
    assert_eq!(i.dpi, None);
    assert_eq!(i.sha256, <[u8; 32]>::from(Sha256::digest(pdf)));
    // Text, whatever its name, is refused by type; a PDF without its end marker is malformed.
    assert_eq!(
        reason(b"just some text, named scan.pdf"),
        RefusalReason::Type
    );
    assert_eq!(reason(b"%PDF-1.4\n1 0 obj\n"), RefusalReason::Malformed);
    assert_eq!(reason(b"GIF89a...."), RefusalReason::Type);
}

#[test]
fn png_resolution_from_phys() {
    // 11811 px/m × 0.0254 m/in = 299.9994 → 300 dpi.
    let i = inspect(&png(Some((11811, 11811, 1))), 1 << 20).unwrap();
    assert_eq!(i.media_type, MediaType::Png);
    assert_eq!(i.dpi, Some((300, 300)));
    // 2835 px/m × 0.0254 = 72.009 → 72 dpi: refused.
    assert_eq!(
        reason(&png(Some((2835, 2835, 1)))),
        RefusalReason::Resolution
    );
    // 300 dpi across but 5000 px/m × 0.0254 = 127 dpi down: refused (either axis).
    assert_eq!(
        reason(&png(Some((11811, 5000, 1)))),
        RefusalReason::Resolution
    );
    // Unit 0 (aspect ratio only) and no pHYs at all: no resolution.
    assert_eq!(
        reason(&png(Some((11811, 11811, 0)))),
        RefusalReason::Resolution
    );
    assert_eq!(reason(&png(None)), RefusalReason::Resolution);
    // Cut in the middle of a chunk.
    let p = png(Some((11811, 11811, 1)));
    assert_eq!(reason(&p[..20]), RefusalReason::Malformed);
}

#[test]
fn jpeg_resolution_from_jfif_and_exif() {
    assert_eq!(
        inspect(&jpeg(1, 200, 300), 1 << 20).unwrap().dpi,
        Some((200, 300))
    );
    // 118 dots/cm × 2.54 = 299.72 → 300 dpi.
    assert_eq!(
        inspect(&jpeg(2, 118, 118), 1 << 20).unwrap().dpi,
        Some((300, 300))
    );
    assert_eq!(reason(&jpeg(1, 72, 72)), RefusalReason::Resolution);
    // Units 0: aspect ratio only, no EXIF: no resolution.
    assert_eq!(reason(&jpeg(0, 1, 1)), RefusalReason::Resolution);
    assert_eq!(
        inspect(&jpeg_exif(600, 600), 1 << 20).unwrap().dpi,
        Some((600, 600))
    );
    assert_eq!(reason(&jpeg_exif(96, 96)), RefusalReason::Resolution);
    assert_eq!(
        reason(&[0xFF, 0xD8, 0xFF, 0xE0, 0x40, 0x00]),
        RefusalReason::Malformed
    );
}

#[test]
fn size_limits() {
    let p = png(Some((11811, 11811, 1)));
    assert_eq!(reason(&[]), RefusalReason::Size);
    assert!(inspect(&p, p.len() as u64).is_ok());
    assert_eq!(
        inspect(&p, p.len() as u64 - 1).unwrap_err().reason,
        RefusalReason::Size
    );
}

pub(crate) fn sample_ref(n: u64) -> AttachmentRef {
    AttachmentRef {
        sheet_number: n,
        kind: AttachmentKind::DegradedPaper,
        media_type: "image/png".into(),
        size: 1234,
        sha256: [n as u8; 32],
    }
}

#[test]
fn attachment_lot_round_trip_and_strictness() {
    let lot = AttachmentLot {
        lot_id: AttachmentLot::id("810101234567", 3),
        practitioner_id: "810101234567".into(),
        destination: "011751234".into(),
        signed_lot_id: "810101234567-00000007".into(),
        entries: vec![
            AttachmentEntry {
                reference: sample_ref(1),
                content: vec![1, 2, 3],
            },
            AttachmentEntry {
                reference: sample_ref(2),
                content: vec![],
            },
        ],
    };
    assert_eq!(lot.lot_id, "810101234567-A00000003");
    let der = lot.to_der().unwrap();
    assert_eq!(AttachmentLot::from_der(&der).unwrap(), lot);
    // An unknown kind is refused.
    let mut bad = lot.clone();
    bad.entries.truncate(1);
    let mut der1 = bad.to_der().unwrap();
    // The kind INTEGER 1 (02 01 01) follows the sheet number (02 01 01) in the first ref.
    let at = der1
        .windows(6)
        .position(|w| w == [0x02, 0x01, 0x01, 0x02, 0x01, 0x01])
        .unwrap();
    der1[at + 5] = 9;
    assert!(AttachmentLot::from_der(&der1).is_err());
    assert!(AttachmentLot::from_der(&der[..der.len() - 1]).is_err());
}
