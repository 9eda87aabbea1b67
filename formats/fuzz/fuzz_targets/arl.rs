//! The ARL decoder (what the insurer answers): never panics, canonical DER only.
#![no_main]

use fse_formats::ack::Arl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(arl) = Arl::from_der(data) {
        assert_eq!(arl.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
    }
});
