//! The request line's parse: serde_json's `Value`, but a member given twice in an object is
//! found (and its path kept) instead of the last one silently winning, and the `id` is kept as
//! the client wrote it. One pass over the line, no allocation beyond those of the `Value`.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// One step of a path.
enum Step {
    Member(String),
    Index(usize),
}

/// What the parse noticed beside the values.
#[derive(Default)]
pub(in crate::api) struct Found {
    /// The first member given twice (but `id`): its path, innermost step first.
    duplicate: Option<Vec<Step>>,
    /// The request's `id` is given twice: whichever member came twice first, the id to
    /// answer with is unknown.
    pub id_twice: bool,
    /// The longest string value, in bytes.
    pub longest: usize,
}

impl Found {
    fn twice(&mut self, name: &str) {
        if self.duplicate.is_none() {
            self.duplicate = Some(vec![Step::Member(name.to_string())]);
        }
    }

    /// The path of the member given twice, outermost first.
    pub fn duplicate(&self) -> Option<Duplicate> {
        let steps = self.duplicate.as_ref()?;
        Some(Duplicate(
            steps
                .iter()
                .rev()
                .map(|s| match s {
                    Step::Member(m) => Ok(m.clone()),
                    Step::Index(i) => Err(*i),
                })
                .collect(),
        ))
    }
}

/// Where a member is given twice: the members and indexes from the request object down.
pub(in crate::api) struct Duplicate(Vec<Result<String, usize>>);

impl Duplicate {
    /// Its path (`method`, `x.y`) when it is not inside `params`.
    pub fn outside_params(&self) -> Option<String> {
        match self.0.as_slice() {
            [Ok(m), _, ..] if m == "params" => None,
            steps => Some(path(steps)),
        }
    }

    /// Its path below `params` (`acts[1].code`; `params` for positional parameters).
    pub fn in_params(&self) -> Option<String> {
        match self.0.as_slice() {
            [Ok(m), Ok(_), ..] if m == "params" => Some(path(&self.0[1..])),
            [Ok(m), Err(_), ..] if m == "params" => Some("params".to_string()),
            _ => None,
        }
    }
}

fn path(steps: &[Result<String, usize>]) -> String {
    let mut out = String::new();
    for (n, step) in steps.iter().enumerate() {
        match step {
            // A member named "" is shown as `""`: a field is never an empty name.
            Ok(m) => {
                if n > 0 {
                    out.push('.');
                }
                out.push_str(if m.is_empty() { "\"\"" } else { m });
            }
            Err(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A request line parsed.
pub(in crate::api) enum Parsed<'a> {
    /// Not an object (a batch, a string …).
    NotObject,
    /// An object: its `id` as written (the first one, if given twice) and its other members.
    Object {
        id: Option<&'a RawValue>,
        members: Map<String, Value>,
    },
}

/// Parses one request line, noting in `found` what it sees.
pub(in crate::api) fn parse<'a>(
    text: &'a str,
    found: &mut Found,
) -> Result<Parsed<'a>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Top { found }.deserialize(&mut de)?;
    de.end()?;
    Ok(parsed)
}

struct Top<'f> {
    found: &'f mut Found,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = Parsed<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Parsed<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON-RPC request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let found = self.found;
        let mut id = None;
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if name == "id" {
                let raw: &'de RawValue = map.next_value()?;
                // Only scanned: read as serde_json reads any other value.
                super::readable(raw).map_err(|e| {
                    // Its own position in the id is no help: the line's comes after.
                    let why = e.to_string();
                    let why = why.split(" at line ").next().unwrap_or_default();
                    serde::de::Error::custom(format_args!("id: {why}"))
                })?;
                if id.is_some() {
                    found.id_twice = true;
                } else {
                    id = Some(raw);
                }
                continue;
            }
            member(&mut map, &mut members, name, found)?;
        }
        Ok(Parsed::Object { id, members })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let mut v = Any { found: self.found }.visit_seq(seq)?;
        super::scrub(&mut v);
        Ok(Parsed::NotObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Parsed::NotObject)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Parsed::NotObject)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Parsed::NotObject)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Parsed::NotObject)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Parsed::NotObject)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Parsed::NotObject)
    }
}

/// Reads one member's value into `members`; a name already there is noted, its second
/// value wiped and dropped.
fn member<'de, A: MapAccess<'de>>(
    map: &mut A,
    members: &mut Map<String, Value>,
    name: String,
    found: &mut Found,
) -> Result<(), A::Error> {
    match members.entry(name) {
        Entry::Vacant(slot) => {
            let before = found.duplicate.is_some();
            let value = map.next_value_seed(Any { found: &mut *found })?;
            if let (false, Some(path)) = (before, found.duplicate.as_mut()) {
                path.push(Step::Member(slot.key().clone()));
            }
            slot.insert(value);
        }
        Entry::Occupied(first) => {
            found.twice(first.key());
            let mut second = map.next_value_seed(Any { found: &mut *found })?;
            super::scrub(&mut second);
        }
    }
    Ok(())
}

/// Any JSON value, as serde_json's `Value` reads it.
struct Any<'f> {
    found: &'f mut Found,
}

impl<'de> DeserializeSeed<'de> for Any<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Any<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        self.found.longest = self.found.longest.max(s.len());
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        self.found.longest = self.found.longest.max(s.len());
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let found = self.found;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let before = found.duplicate.is_some();
            let Some(item) = seq.next_element_seed(Any { found: &mut *found })? else {
                break;
            };
            if let (false, Some(path)) = (before, found.duplicate.as_mut()) {
                path.push(Step::Index(items.len()));
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let found = self.found;
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            member(&mut map, &mut members, name, found)?;
        }
        Ok(Value::Object(members))
    }
}
