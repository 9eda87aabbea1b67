//! The store's times as time types: [`Stamp`], the time a row was changed (UTC to the
//! millisecond, stored `YYYY-MM-DDTHH:MM:SS.sssZ`), and [`CompactTime`], a sheet's or a lot's
//! own time as its caller gave it (UTC to the second, stored `YYYYMMDDHHMMSSZ`). Text is made
//! and read only at the edges: binding a parameter or reading a column, serializing, or
//! displaying; both are written digit by digit into a buffer on the stack ([`Stamp::text`],
//! [`CompactTime::text`]), without an allocation. A column whose text is not of its form
//! does not decode (the row is reported damaged).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Serialize, Serializer};

/// A text that is not the form of the time type asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a time of the form {form}")]
pub struct BadTime {
    /// The text.
    pub text: String,
    /// The form expected.
    pub form: &'static str,
}

/// Writes `value` in `width` decimal digits at `at` (its lowest digits, zero-padded).
fn put(b: &mut [u8], at: usize, mut value: u32, width: usize) {
    for i in (at..at + width).rev() {
        // A digit: `value % 10` is below 10.
        b[i] = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The number the decimal digits `b[at..at + width]` write, or `None` when one is not a digit.
fn digits(b: &[u8], at: usize, width: usize) -> Option<u32> {
    b.get(at..at + width)?.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// The time `y m d h mi s` (and `ms` milliseconds), when it is one.
fn naive(y: u32, m: u32, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> Option<NaiveDateTime> {
    NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?.and_hms_milli_opt(h, mi, s, ms)
}

/// A time written into a buffer on the stack: what [`Stamp::text`] and
/// [`CompactTime::text`] give, to bind or to write without an allocation.
#[derive(Clone, Copy)]
pub struct TimeText<const N: usize>([u8; N]);

impl<const N: usize> TimeText<N> {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written into the buffer.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The text reads as `str` wherever text is asked.
impl<const N: usize> std::ops::Deref for TimeText<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Display for TimeText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for TimeText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> ToSql for TimeText<N> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(&self.0)))
    }
}

/// When a row was changed: UTC to the millisecond, stored and shown as
/// `2026-11-30T09:42:10.123Z` (the text SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ','now')`
/// gives). Years are 0 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(DateTime<Utc>);

impl Stamp {
    /// The form of the text.
    pub const FORM: &'static str = "YYYY-MM-DDTHH:MM:SS.sssZ";

    /// Now, to the millisecond.
    pub fn now() -> Stamp {
        Stamp::at(Utc::now())
    }

    /// `at` to the millisecond (a leap second stays at `.999` of its minute's last second).
    /// Years past 9999 (which the text cannot write) are taken as the last millisecond of 9999,
    /// before 0 as the first of year 0.
    pub fn at(at: DateTime<Utc>) -> Stamp {
        let ms = (at.nanosecond() / 1_000_000).min(999);
        let t = at
            .with_nanosecond(ms * 1_000_000)
            .unwrap_or(at)
            .naive_utc()
            .clamp(Self::min().naive_utc(), Self::max().naive_utc());
        Stamp(t.and_utc())
    }

    /// The first stamp: `0000-01-01T00:00:00.000Z`.
    fn min() -> DateTime<Utc> {
        naive(0, 1, 1, 0, 0, 0, 0).unwrap_or_default().and_utc()
    }

    /// The last stamp: `9999-12-31T23:59:59.999Z`.
    fn max() -> DateTime<Utc> {
        naive(9999, 12, 31, 23, 59, 59, 999)
            .unwrap_or_default()
            .and_utc()
    }

    /// `age` before now (the first stamp when that is before year 0): what a row stamped at or
    /// before it is as old as.
    pub fn ago(age: std::time::Duration) -> Stamp {
        let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
        Stamp::at(
            Utc::now()
                .checked_sub_signed(age)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        )
    }

    /// The time.
    pub fn time(self) -> DateTime<Utc> {
        self.0
    }

    /// The stored text, on the stack.
    pub fn text(self) -> TimeText<24> {
        let at = self.0;
        let mut b = *b"0000-00-00T00:00:00.000Z";
        // 0 ..= 9999 by construction.
        put(&mut b, 0, at.year().clamp(0, 9999).unsigned_abs(), 4);
        put(&mut b, 5, at.month(), 2);
        put(&mut b, 8, at.day(), 2);
        put(&mut b, 11, at.hour(), 2);
        put(&mut b, 14, at.minute(), 2);
        put(&mut b, 17, at.second(), 2);
        put(&mut b, 20, (at.nanosecond() / 1_000_000).min(999), 3);
        TimeText(b)
    }
}

impl FromStr for Stamp {
    type Err = BadTime;
    fn from_str(s: &str) -> Result<Stamp, BadTime> {
        let b = s.as_bytes();
        let form_ok = b.len() == 24
            && [
                (4, b'-'),
                (7, b'-'),
                (10, b'T'),
                (13, b':'),
                (16, b':'),
                (19, b'.'),
                (23, b'Z'),
            ]
            .iter()
            .all(|&(i, c)| b[i] == c);
        let parsed = form_ok
            .then(|| {
                naive(
                    digits(b, 0, 4)?,
                    digits(b, 5, 2)?,
                    digits(b, 8, 2)?,
                    digits(b, 11, 2)?,
                    digits(b, 14, 2)?,
                    digits(b, 17, 2)?,
                    digits(b, 20, 3)?,
                )
            })
            .flatten();
        parsed.map(|t| Stamp(t.and_utc())).ok_or_else(|| BadTime {
            text: s.to_owned(),
            form: Stamp::FORM,
        })
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text().as_str())
    }
}

impl ToSql for Stamp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.text().as_str().to_owned()))
    }
}

impl FromSql for Stamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// A sheet's creation time or a lot's closing time as its caller gave it: UTC to the second,
/// stored and shown as `20261130094210Z` (the form the sheet and the lot header carry). Years
/// are 0 to 9999; the default is the epoch, `19700101000000Z`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CompactTime(NaiveDateTime);

impl CompactTime {
    /// The form of the text.
    pub const FORM: &'static str = "YYYYMMDDHHMMSSZ";

    /// `at` to the second (a leap second stays at `59`); `None` for a year past 9999 or before 0.
    pub fn at(at: DateTime<Utc>) -> Option<CompactTime> {
        let t = at.naive_utc();
        let t = t.with_nanosecond(0).unwrap_or(t);
        (0..=9999).contains(&t.year()).then_some(CompactTime(t))
    }

    /// The time.
    pub fn time(self) -> NaiveDateTime {
        self.0
    }

    /// The stored text, on the stack.
    pub fn text(self) -> TimeText<15> {
        let at = self.0;
        let mut b = *b"00000000000000Z";
        // 0 ..= 9999 by construction.
        put(&mut b, 0, at.year().clamp(0, 9999).unsigned_abs(), 4);
        put(&mut b, 4, at.month(), 2);
        put(&mut b, 6, at.day(), 2);
        put(&mut b, 8, at.hour(), 2);
        put(&mut b, 10, at.minute(), 2);
        put(&mut b, 12, at.second(), 2);
        TimeText(b)
    }
}

impl FromStr for CompactTime {
    type Err = BadTime;
    fn from_str(s: &str) -> Result<CompactTime, BadTime> {
        let b = s.as_bytes();
        let parsed = (b.len() == 15 && b[14] == b'Z')
            .then(|| {
                naive(
                    digits(b, 0, 4)?,
                    digits(b, 4, 2)?,
                    digits(b, 6, 2)?,
                    digits(b, 8, 2)?,
                    digits(b, 10, 2)?,
                    digits(b, 12, 2)?,
                    0,
                )
            })
            .flatten();
        parsed.map(CompactTime).ok_or_else(|| BadTime {
            text: s.to_owned(),
            form: CompactTime::FORM,
        })
    }
}

impl fmt::Display for CompactTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl Serialize for CompactTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text().as_str())
    }
}

impl ToSql for CompactTime {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.text().as_str().to_owned()))
    }
}

impl FromSql for CompactTime {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_and_writes_its_text_unchanged() {
        for text in [
            "2026-11-30T09:42:10.123Z",
            "0000-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
            "2024-02-29T23:59:59.007Z",
        ] {
            let s: Stamp = text.parse().unwrap();
            assert_eq!(s.to_string(), text);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{text}\""));
        }
        // 2026-11-30 09:42:10 UTC is 1 796 031 730 s after the epoch:
        // 20 787 days (1970-01-01 to 2026-11-30) × 86 400 + 9 × 3600 + 42 × 60 + 10.
        let s: Stamp = "2026-11-30T09:42:10.123Z".parse().unwrap();
        assert_eq!(s.time().timestamp_millis(), 1_796_031_730_123);
    }

    #[test]
    fn a_stamp_refuses_text_of_another_form() {
        for text in [
            "2026-11-30T09:42:10Z",
            "2026-11-30 09:42:10.123Z",
            "2026-02-30T09:42:10.123Z",
            "2026-11-30T24:00:00.000Z",
            "+026-11-30T09:42:10.123Z",
            "",
        ] {
            let e = text.parse::<Stamp>().unwrap_err();
            assert_eq!(e.form, Stamp::FORM, "{text}");
        }
    }

    #[test]
    fn a_stamp_keeps_milliseconds_only() {
        let t = DateTime::from_timestamp(1_796_031_730, 123_456_789).unwrap();
        assert_eq!(Stamp::at(t).to_string(), "2026-11-30T09:42:10.123Z");
        // A leap second (chrono counts its nanoseconds past 10^9) stays at .999.
        let leap = DateTime::from_timestamp(1_796_083_199, 1_500_000_000).unwrap();
        assert_eq!(Stamp::at(leap).to_string(), "2026-11-30T23:59:59.999Z");
    }

    #[test]
    fn a_compact_time_reads_and_writes_its_text_unchanged() {
        let t: CompactTime = "20261130094210Z".parse().unwrap();
        assert_eq!(t.to_string(), "20261130094210Z");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"20261130094210Z\"");
        let at = DateTime::from_timestamp(1_796_031_730, 999_000_000).unwrap();
        assert_eq!(CompactTime::at(at), Some(t));
        for bad in [
            "2026113009421Z",
            "20261130094210",
            "20261330094210Z",
            "2026-1130094210Z",
        ] {
            assert!(bad.parse::<CompactTime>().is_err(), "{bad}");
        }
    }

    #[test]
    fn times_bind_and_read_as_their_text() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let s: Stamp = "2026-11-30T09:42:10.123Z".parse().unwrap();
        let (back, text): (Stamp, String) = conn
            .query_row("SELECT ?1, ?2", rusqlite::params![s, s.text()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((back, text.as_str()), (s, "2026-11-30T09:42:10.123Z"));
        let bad = conn.query_row("SELECT 'yesterday'", [], |r| r.get::<_, Stamp>(0));
        assert!(matches!(
            bad,
            Err(rusqlite::Error::FromSqlConversionFailure(..))
        ));
    }
}
