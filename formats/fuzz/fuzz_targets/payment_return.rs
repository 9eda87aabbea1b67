//! The payment return decoder (what the insurer pays or refuses): never panics, canonical DER only.
#![no_main]

use fse_formats::ack::PaymentReturn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ret) = PaymentReturn::from_der(data) {
        assert_eq!(ret.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
    }
});
