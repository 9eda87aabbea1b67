//! The signed lot decoder and verifier (what the insurer simulator reads): never panic, and the
//! decoder accepts only the canonical DER of what it decodes.
#![no_main]

use fse_formats::lot::SignedLot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(lot) = SignedLot::from_der(data) {
        let _ = lot.verify();
        assert_eq!(lot.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
    }
});
