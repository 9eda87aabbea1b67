//! The daemon's card readers against a card that answers arbitrary bytes: no panic.
#![no_main]

use std::collections::VecDeque;

use fse_formats::cards;
use fse_formats::channel::{CardChannel, ChannelError};
use libfuzzer_sys::fuzz_target;

/// Answers the fuzzer's bytes, split on 0xFE 0xFE into one answer per command.
struct Scripted(VecDeque<Vec<u8>>);

impl CardChannel for Scripted {
    fn transmit(&mut self, _command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.0.pop_front().ok_or(ChannelError::CardRemoved)
    }
}

fuzz_target!(|data: &[u8]| {
    let answers: VecDeque<Vec<u8>> = data.split(|b| *b == 0xFE).map(<[u8]>::to_vec).collect();
    let _ = cards::read_cps(&mut Scripted(answers.clone()));
    let _ = cards::read_vitale(&mut Scripted(answers.clone()));
    let _ = cards::identify(&mut Scripted(answers.clone()));
    let _ = cards::pin_tries_left(&mut Scripted(answers.clone()));
    let _ = cards::cps_sign(&mut Scripted(answers.clone()), b"header");
    let _ = cards::vitale_authenticate(&mut Scripted(answers), &[0; 32]);
});
