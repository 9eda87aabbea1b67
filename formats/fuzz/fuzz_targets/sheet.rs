//! The care sheet decoder (what a spool, a lot or an insurer hands back): never panics, and
//! whatever it accepts is the canonical DER of what it decoded.
#![no_main]

use fse_formats::fse::CareSheet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sheet) = CareSheet::from_der(data) {
        let _ = sheet.verify_presence();
        assert_eq!(sheet.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
    }
});
