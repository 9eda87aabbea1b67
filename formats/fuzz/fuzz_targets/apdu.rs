//! APDU framing and card-file TLV on arbitrary bytes: no panic.
#![no_main]

use fse_formats::{apdu, tlv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = apdu::Command::parse(data);
    let _ = apdu::Response::parse(data);
    let _ = apdu::redacted(data);
    if let Ok(recs) = tlv::Records::new(data) {
        for tag in [0x65, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87] {
            let _ = recs.text(tag);
            let _ = recs.byte(tag);
        }
    }
});
