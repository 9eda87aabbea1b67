//! The DRE lot decoder and verifier (what an AMC reads): never panics, canonical DER only.
#![no_main]

use fse_formats::dre_lot::DreLot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(lot) = DreLot::from_der(data) {
        assert_eq!(lot.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
        let _ = lot.verify(None, 0);
    }
});
