//! The lot header decoder (the bytes the CPS signs): never panics, canonical DER only.
#![no_main]

use fse_formats::lot::LotHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = LotHeader::from_der(data) {
        assert_eq!(header.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
    }
});
