//! The replay file: `FSEDRPL1`, a length-prefixed JSON [`Plan`], then one frame per signed
//! lot (a little-endian `u32` length and the lot's DER), then a zero length and a
//! length-prefixed JSON [`Summary`]. Read and written a frame at a time: the day is never
//! held in memory.

use std::io::{BufRead, Read, Write};

use serde::{Deserialize, Serialize};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"FSEDRPL1";
/// The largest frame read: a lot of fsed's size limit and its certificate fit well under it.
pub const MAX_FRAME: u32 = 64 << 20;

/// What was asked of the generator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Sheets in the day.
    pub sheets: u64,
    /// Practitioners sharing them.
    pub practitioners: u64,
    /// Patients they are for.
    pub patients: u64,
    /// Seed of the population and draws.
    pub seed: u64,
    /// Day of care, `YYYYMMDD`.
    pub day: String,
    /// Lots damaged on purpose (signature, sheet after signing, proof of presence in turn).
    pub tampered: u64,
}

/// What the generator wrote, at the end of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Lots written.
    pub lots: u64,
    /// Sheets written.
    pub sheets: u64,
    /// Lots damaged on purpose.
    pub tampered_lots: u64,
    /// Sheets in the damaged lots.
    pub tampered_sheets: u64,
}

/// Why a replay file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading or writing failed.
    #[error("replay file: {0}")]
    Io(#[from] std::io::Error),
    /// Not a replay file, or damaged framing.
    #[error("replay file: {field}: {reason}")]
    Format {
        /// The part that is wrong.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

fn format_error(field: &'static str, reason: impl Into<String>) -> FileError {
    FileError::Format {
        field,
        reason: reason.into(),
    }
}

fn write_json(out: &mut impl Write, value: &impl Serialize) -> Result<(), FileError> {
    let text = serde_json::to_vec(value).map_err(|e| format_error("json", e.to_string()))?;
    write_frame(out, &text)
}

/// Writes the magic and the plan.
pub fn write_head(out: &mut impl Write, plan: &Plan) -> Result<(), FileError> {
    out.write_all(MAGIC)?;
    write_json(out, plan)
}

/// Writes one frame: its length, then its bytes.
pub fn write_frame(out: &mut impl Write, bytes: &[u8]) -> Result<(), FileError> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME && *l > 0)
        .ok_or_else(|| format_error("frame", format!("{} bytes", bytes.len())))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(bytes)?;
    Ok(())
}

/// Writes the end mark and the summary.
pub fn write_tail(out: &mut impl Write, summary: &Summary) -> Result<(), FileError> {
    out.write_all(&0u32.to_le_bytes())?;
    write_json(out, summary)
}

/// Reads a replay file frame by frame.
pub struct Reader<R> {
    input: R,
    /// The plan at the head of the file.
    pub plan: Plan,
    /// The summary, once the end mark is read.
    pub summary: Option<Summary>,
}

fn read_len(input: &mut impl Read) -> Result<u32, FileError> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => format_error("frame", "file ends inside a frame"),
        _ => FileError::Io(e),
    })?;
    Ok(u32::from_le_bytes(len))
}

fn read_body(input: &mut impl Read, len: u32) -> Result<Vec<u8>, FileError> {
    if len > MAX_FRAME {
        return Err(format_error(
            "frame",
            format!("{len} bytes, over {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    input.read_exact(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => format_error("frame", "file ends inside a frame"),
        _ => FileError::Io(e),
    })?;
    Ok(body)
}

impl<R: BufRead> Reader<R> {
    /// Checks the magic and reads the plan.
    pub fn new(mut input: R) -> Result<Self, FileError> {
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|_| format_error("magic", "shorter than the magic"))?;
        if &magic != MAGIC {
            return Err(format_error("magic", "not a replay file (FSEDRPL1)"));
        }
        let len = read_len(&mut input)?;
        let plan = serde_json::from_slice(&read_body(&mut input, len)?)
            .map_err(|e| format_error("plan", e.to_string()))?;
        Ok(Reader {
            input,
            plan,
            summary: None,
        })
    }

    /// The next lot's bytes; `None` after the end mark (the summary is then read).
    pub fn next_lot(&mut self) -> Result<Option<Vec<u8>>, FileError> {
        if self.summary.is_some() {
            return Ok(None);
        }
        let len = read_len(&mut self.input)?;
        if len == 0 {
            let len = read_len(&mut self.input)?;
            let summary = serde_json::from_slice(&read_body(&mut self.input, len)?)
                .map_err(|e| format_error("summary", e.to_string()))?;
            self.summary = Some(summary);
            return Ok(None);
        }
        read_body(&mut self.input, len).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_truncation_is_an_error() {
        let plan = Plan {
            sheets: 3,
            practitioners: 1,
            patients: 2,
            seed: 9,
            day: "20261207".into(),
            tampered: 0,
        };
        let mut out = Vec::new();
        write_head(&mut out, &plan).unwrap();
        write_frame(&mut out, b"lot one").unwrap();
        write_frame(&mut out, b"lot two!").unwrap();
        let summary = Summary {
            lots: 2,
            sheets: 3,
            ..Summary::default()
        };
        write_tail(&mut out, &summary).unwrap();
        let mut r = Reader::new(&out[..]).unwrap();
        assert_eq!(r.plan, plan);
        assert_eq!(r.next_lot().unwrap().unwrap(), b"lot one");
        assert_eq!(r.next_lot().unwrap().unwrap(), b"lot two!");
        assert!(r.next_lot().unwrap().is_none());
        assert_eq!(r.summary, Some(summary));
        // Magic (8) + length (4) + plan, then the first frame's length (4) + 7 bytes: cut
        // 3 bytes into that frame's body.
        let plan_len = u32::from_le_bytes(out[8..12].try_into().unwrap()) as usize;
        let cut = 8 + 4 + plan_len + 4 + 3;
        let mut r = Reader::new(&out[..cut]).unwrap();
        assert!(matches!(
            r.next_lot(),
            Err(FileError::Format { field: "frame", .. })
        ));
        assert!(Reader::new(&b"NOTAFILE...."[..]).is_err());
        assert!(write_frame(&mut Vec::new(), b"").is_err());
    }
}
