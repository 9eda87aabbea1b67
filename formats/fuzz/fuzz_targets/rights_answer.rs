//! The rights answer decoder as the insurer sends it (a signed return whose content is a rights
//! answer) and the rights request decoder the insurer runs: never panic, canonical DER only.
#![no_main]

use fse_formats::ack::{ReturnContent, SignedReturn};
use fse_formats::rights::{RightsAnswer, RightsRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedReturn::from_der(data) {
        assert_eq!(signed.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
        if let ReturnContent::Rights(answer) = &signed.content {
            let _ = answer.organism();
        }
    }
    if let Ok(answer) = RightsAnswer::from_der(data) {
        assert_eq!(answer.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
    }
    if let Ok(request) = RightsRequest::from_der(data) {
        assert_eq!(request.to_der().ok().as_deref(), Some(data), "accepted non-canonical DER");
    }
});
