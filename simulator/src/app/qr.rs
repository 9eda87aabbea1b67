//! The QR code of a token: made by the `qrcode` crate (byte mode, error correction level M),
//! shown in a terminal with Unicode half blocks, written as an 8-bit grey PNG by the `png`
//! crate (4 pixels a module, the 4-module quiet zone the standard asks for).

use std::path::Path;

use qrcode::render::unicode::Dense1x2;
use qrcode::{Color, EcLevel, QrCode};

use super::AppError;

/// Pixels per module in the PNG.
pub const MODULE_PX: usize = 4;

/// Modules of light margin around the code (ISO/IEC 18004: 4).
pub const QUIET_ZONE: usize = 4;

/// The QR code of `text`.
pub fn code(text: &str) -> Result<QrCode, AppError> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| AppError::Other(format!("QR code: {e}")))
}

/// The code for a terminal: two modules a character, dark on light whatever the terminal's
/// colours (the renderer paints the light modules).
pub fn terminal(code: &QrCode) -> String {
    code.render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .build()
}

/// The grey pixels of the code, row by row (0 dark, 255 light), and the image's side.
pub fn pixels(code: &QrCode) -> (Vec<u8>, usize) {
    let width = code.width();
    let colors = code.to_colors();
    let side = (width + 2 * QUIET_ZONE) * MODULE_PX;
    let mut out = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % width + QUIET_ZONE, i / width + QUIET_ZONE);
        for y in my * MODULE_PX..(my + 1) * MODULE_PX {
            let row = y * side;
            out[row + mx * MODULE_PX..row + (mx + 1) * MODULE_PX].fill(0);
        }
    }
    (out, side)
}

/// Writes the code as a PNG to `path`.
pub fn write_png(code: &QrCode, path: &Path) -> Result<(), AppError> {
    let failed = |e: &dyn std::fmt::Display| AppError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let (pixels, side) = pixels(code);
    let side = u32::try_from(side).map_err(|e| failed(&e))?;
    let file = std::fs::File::create(path).map_err(|e| failed(&e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| failed(&e))?;
    writer.write_image_data(&pixels).map_err(|e| failed(&e))?;
    writer.finish().map_err(|e| failed(&e))
}
