//! APDU transcripts for tests: [`Recorder`] wraps a channel and writes every
//! exchange as text (`> 00 A4 …` then `< 90 00`, secrets masked as `**`);
//! [`Replay`] plays such a transcript back as a card, checking that each
//! command is the one expected (a masked byte matches any byte).

use std::collections::VecDeque;

use crate::apdu::redacted;
use crate::channel::{CardChannel, ChannelError};

/// Records the exchanges of a channel.
pub struct Recorder<C> {
    inner: C,
    text: String,
}

impl<C: CardChannel> Recorder<C> {
    /// Wraps a channel.
    pub fn new(inner: C) -> Self {
        Recorder {
            inner,
            text: String::new(),
        }
    }

    /// The transcript so far.
    pub fn transcript(&self) -> &str {
        &self.text
    }
}

fn hex_line(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl<C: CardChannel> CardChannel for Recorder<C> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let resp = self.inner.transmit(command)?;
        self.text
            .push_str(&format!("> {}\n< {}\n", redacted(command), hex_line(&resp)));
        Ok(resp)
    }
}

/// A card that answers from a transcript.
pub struct Replay {
    steps: VecDeque<(Vec<Option<u8>>, Vec<u8>)>,
}

/// A transcript line that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("transcript line {line}: {reason}")]
pub struct TranscriptError {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub reason: &'static str,
}

impl Replay {
    /// Parses a transcript; blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Result<Replay, TranscriptError> {
        let mut steps = VecDeque::new();
        let mut pending: Option<Vec<Option<u8>>> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason| TranscriptError {
                line: n + 1,
                reason,
            };
            let (Some(dir), Some(rest)) = (line.get(..1), line.get(1..)) else {
                return Err(err("expected '>' then '<' lines"));
            };
            let bytes: Vec<Option<u8>> = rest
                .split_whitespace()
                .map(|t| {
                    if t == "**" {
                        Ok(None)
                    } else {
                        u8::from_str_radix(t, 16)
                            .map(Some)
                            .map_err(|_| err("not hex"))
                    }
                })
                .collect::<Result<_, _>>()?;
            match (dir, pending.take()) {
                (">", None) => pending = Some(bytes),
                ("<", Some(cmd)) => {
                    let resp = bytes
                        .into_iter()
                        .collect::<Option<Vec<u8>>>()
                        .ok_or_else(|| err("masked byte in a response"))?;
                    steps.push_back((cmd, resp));
                }
                _ => return Err(err("expected '>' then '<' lines")),
            }
        }
        if pending.is_some() {
            return Err(TranscriptError {
                line: text.lines().count(),
                reason: "command without response",
            });
        }
        Ok(Replay { steps })
    }

    /// Whether every recorded exchange was played.
    pub fn finished(&self) -> bool {
        self.steps.is_empty()
    }
}

impl CardChannel for Replay {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let (expected, _) = self
            .steps
            .front()
            .ok_or_else(|| ChannelError::Reader("transcript exhausted".into()))?;
        let same = expected.len() == command.len()
            && expected
                .iter()
                .zip(command)
                .all(|(e, c)| e.is_none_or(|e| e == *c));
        if !same {
            return Err(ChannelError::Reader(format!(
                "unexpected command {} (transcript has another)",
                redacted(command)
            )));
        }
        Ok(self
            .steps
            .pop_front()
            .map(|(_, resp)| resp)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_what_was_recorded_with_pins_masked() {
        let text = "# a PIN check\n> 00 20 00 81 08 ** ** ** ** ** ** ** **\n< 63 C2\n> 00 B0 00 00 00\n< 01 02 90 00\n";
        let mut r = Replay::parse(text).unwrap();
        assert_eq!(
            r.transmit(b"\x00\x20\x00\x81\x081234\xFF\xFF\xFF\xFF")
                .unwrap(),
            vec![0x63, 0xC2]
        );
        assert!(
            r.transmit(&[0, 0xB0, 0, 1, 0]).is_err(),
            "another command is refused"
        );
        assert!(!r.finished());
        assert_eq!(Replay::parse("< 90 00").err().unwrap().line, 1);
        assert!(Replay::parse("> 00\n< **").is_err());
        // Found by cargo-fuzz: a line starting with a multi-byte character.
        assert!(Replay::parse("ݬ 00").is_err());
    }
}
