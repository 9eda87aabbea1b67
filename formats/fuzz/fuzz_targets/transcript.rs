//! APDU transcript parsing and replay on arbitrary text: no panic.
#![no_main]

use fse_formats::channel::CardChannel;
use fse_formats::transcript::Replay;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(mut replay) = Replay::parse(text) {
            let _ = replay.transmit(&[0x00, 0xA4, 0x04, 0x00]);
        }
    }
});
