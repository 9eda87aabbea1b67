//! The DRE decoder: never panics, and accepts only the canonical DER of what it decodes.
#![no_main]

use fse_formats::dre::Dre;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(dre) = Dre::from_der(data) {
        assert_eq!(dre.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
    }
});
