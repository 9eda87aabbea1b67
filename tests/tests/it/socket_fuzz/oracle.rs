//! The oracle of the socket fuzz: the reply JSON-RPC 2.0 and fsed's API prescribe for one
//! request line (none, or one with this id and maybe this error code), worked out from the line
//! alone.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::MAX_LINE;

/// What the protocol says a line gets.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expect {
    /// No reply: a blank line or a notification.
    Nothing,
    /// One reply with this id; with this error code when the envelope decides it (`None`:
    /// the method answers, an error it declares or a result).
    Reply {
        id: Value,
        code: Option<i64>,
        method: Option<String>,
    },
}

/// The reply JSON-RPC 2.0 prescribes for `line` (without its newline), given the methods
/// served.
pub(super) fn expect(line: &[u8], methods: &BTreeSet<String>) -> Expect {
    let reply = |id: Value, code: i64| Expect::Reply {
        id,
        code: Some(code),
        method: None,
    };
    if line.len() > MAX_LINE {
        return reply(Value::Null, -32600);
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return reply(Value::Null, -32700);
    };
    let text = text.trim();
    if text.is_empty() {
        return Expect::Nothing;
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return reply(Value::Null, -32700);
    };
    let Value::Object(obj) = value else {
        return reply(Value::Null, -32600);
    };
    // A member given twice (the first in the text) is refused, not taken last: the id
    // itself with a null id, another outside `params` by the envelope, one inside `params`
    // once the method is known.
    let (id_twice, twice) = given_twice(text);
    if id_twice {
        return reply(Value::Null, -32600);
    }
    let in_params = twice
        .as_ref()
        .is_some_and(|path| path.len() > 1 && path[0] == "params");
    let id = match obj.get("id") {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(v.clone()),
        Some(_) => return reply(Value::Null, -32600),
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if twice.is_some() && !in_params {
        return reply(reply_id, -32600);
    }
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        return reply(reply_id, -32600);
    }
    let Some(Value::String(method)) = obj.get("method") else {
        return reply(reply_id, -32600);
    };
    if !matches!(
        obj.get("params"),
        None | Some(Value::Null | Value::Object(_) | Value::Array(_))
    ) {
        return reply(reply_id, -32600);
    }
    let Some(id) = id else {
        return Expect::Nothing;
    };
    if !methods.contains(method) {
        return reply(id, -32601);
    }
    if in_params {
        return reply(id, -32602);
    }
    Expect::Reply {
        id,
        code: None,
        method: Some(method.clone()),
    }
}

/// Whether the request's `id` is given twice in `text` (valid JSON), and the path (members
/// and indexes, from the request object down) of the first other member given twice in one
/// object, in the order of the text; the value of the `id` is not looked into (fsed only
/// checks it is a string, a number or null).
fn given_twice(text: &str) -> (bool, Option<Vec<String>>) {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct Scan<'a> {
        first: &'a mut Option<Vec<String>>,
        /// At the top (the request object): whether its `id` came twice.
        top: Option<&'a mut bool>,
    }
    impl<'de> DeserializeSeed<'de> for Scan<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Scan<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            loop {
                let mut inner = None;
                let more = seq.next_element_seed(Scan {
                    first: &mut inner,
                    top: None,
                })?;
                if more.is_none() {
                    return Ok(());
                }
                if let (None, Some(mut path)) = (&self.first, inner) {
                    path.insert(0, format!("[{i}]"));
                    *self.first = Some(path);
                }
                i += 1;
            }
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
            let mut seen = BTreeSet::new();
            while let Some(name) = map.next_key::<String>()? {
                let again = !seen.insert(name.clone());
                if let (Some(id_twice), "id") = (self.top.as_deref_mut(), name.as_str()) {
                    *id_twice |= again;
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                // Found when the name comes again, before its second value is read.
                if again && self.first.is_none() {
                    *self.first = Some(vec![name.clone()]);
                }
                let mut inner = None;
                map.next_value_seed(Scan {
                    first: &mut inner,
                    top: None,
                })?;
                if let (None, Some(mut path)) = (&self.first, inner) {
                    path.insert(0, name);
                    *self.first = Some(path);
                }
            }
            Ok(())
        }
    }
    let (mut first, mut id_twice) = (None, false);
    let mut de = serde_json::Deserializer::from_str(text);
    let scanned = Scan {
        first: &mut first,
        top: Some(&mut id_twice),
    }
    .deserialize(&mut de);
    match scanned {
        Ok(()) => (id_twice, first),
        Err(_) => (false, None),
    }
}
