//! The payment return decoder as the insurer sends it (a signed return whose content is a
//! payment return): never panics, canonical DER only, for the envelope and the bare return.
#![no_main]

use fse_formats::ack::{PaymentReturn, ReturnContent, SignedReturn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedReturn::from_der(data) {
        assert_eq!(signed.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
        if let ReturnContent::Payment(ret) = &signed.content {
            let _ = ret.to_der();
        }
    }
    if let Ok(ret) = PaymentReturn::from_der(data) {
        assert_eq!(ret.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
    }
});
