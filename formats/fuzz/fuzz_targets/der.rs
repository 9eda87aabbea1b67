//! DER decoders of sheets, lots and ARLs (what an insurer or a spool hands back): no panic.
#![no_main]

use fse_formats::{ack::Arl, fse::CareSheet, lot::LotHeader, lot::SignedLot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sheet) = CareSheet::from_der(data) {
        let _ = sheet.verify_presence();
        let _ = sheet.to_der();
    }
    if let Ok(lot) = SignedLot::from_der(data) {
        let _ = lot.verify();
    }
    let _ = LotHeader::from_der(data);
    let _ = Arl::from_der(data);
});
