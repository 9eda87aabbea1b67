//! The ARL decoder as the insurer sends it (a signed return whose content is an ARL): never
//! panics, canonical DER only, for the envelope and for the bare ARL alike.
#![no_main]

use fse_formats::ack::{Arl, ReturnContent, SignedReturn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedReturn::from_der(data) {
        assert_eq!(signed.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
        if let ReturnContent::Arl(arl) = &signed.content {
            let _ = arl.to_der();
        }
    }
    if let Ok(arl) = Arl::from_der(data) {
        assert_eq!(arl.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
    }
});
