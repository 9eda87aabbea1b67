//! The store's identifiers as types of their own: [`SheetId`], [`LotId`] and
//! [`PractitionerId`]. Each is read from and written to SQLite as the bare value, serializes
//! as the bare value (`#[serde(transparent)]`) and displays as it, so neither the file nor a
//! JSON answer tells them from the integer or text they wrap; in the code a lot id can no
//! longer be passed where a practitioner is asked.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// A sheet's store id (its SQLite rowid, increasing with insertion).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct SheetId(pub i64);

impl SheetId {
    /// The id as the integer the file and the API carry.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl From<i64> for SheetId {
    fn from(id: i64) -> SheetId {
        SheetId(id)
    }
}

impl From<SheetId> for i64 {
    fn from(id: SheetId) -> i64 {
        id.0
    }
}

impl fmt::Display for SheetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl ToSql for SheetId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0))
    }
}

impl FromSql for SheetId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(SheetId)
    }
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id of text `id` (taken as it is: the store checks nothing of its form).
            pub fn new(id: impl Into<String>) -> $name {
                $name(id.into())
            }

            /// The id's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> $name {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> $name {
                $name(id.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        /// The id reads as its text wherever text is asked (logging, formatting, comparing).
        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.0.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                String::column_result(value).map($name)
            }
        }
    };
}

text_id!(
    /// A lot's id, `{practitioner_id}-{number:08}`.
    LotId
);

text_id!(
    /// A practitioner's national id (the CPS holder's), under which sheets and lots are
    /// numbered.
    PractitionerId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_and_display_as_the_bare_value() {
        assert_eq!(serde_json::to_string(&SheetId(42)).unwrap(), "42");
        assert_eq!(SheetId(42).to_string(), "42");
        let lot = LotId::new("10000000001-00000003");
        assert_eq!(
            serde_json::to_string(&lot).unwrap(),
            "\"10000000001-00000003\""
        );
        assert_eq!(lot.to_string(), "10000000001-00000003");
        let back: LotId = serde_json::from_str("\"10000000001-00000003\"").unwrap();
        assert_eq!(back, lot);
        assert_eq!(
            serde_json::to_string(&PractitionerId::from("P1")).unwrap(),
            "\"P1\""
        );
    }

    #[test]
    fn ids_round_trip_through_sqlite_as_the_bare_value() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let (id, kind): (SheetId, String) = conn
            .query_row("SELECT ?1, typeof(?1)", [SheetId(7)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((id, kind.as_str()), (SheetId(7), "integer"));
        let (lot, kind): (LotId, String) = conn
            .query_row("SELECT ?1, typeof(?1)", [LotId::new("P-1")], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((lot.as_str(), kind.as_str()), ("P-1", "text"));
    }
}
