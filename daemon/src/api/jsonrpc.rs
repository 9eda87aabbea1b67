//! JSON-RPC 2.0 framing: one request object a line, read in one pass ([`request`]: a member
//! given twice is found, the `id` kept as written), its envelope checked, ids echoed byte for
//! byte, replies written around their result's text, error messages that echo a client's value
//! cut to [`SHOWN`] characters, and the request's strings wiped once read.

use fse_formats::api::{self, ErrorObject};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use crate::json::JsonText;

mod request;

pub(super) use request::Duplicate;

/// Longest request line accepted, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// Longest `fse.attach` request line accepted, in bytes: the largest document
/// (`attachments.max_bytes` at most 5 MiB = 5,242,880 bytes) in base64 (⌈5,242,880 / 3⌉ × 4 =
/// 6,990,508 characters) and [`MAX_LINE`] for the rest of the request: 7,056,044.
pub const MAX_ATTACH_LINE: usize = (5 * 1024 * 1024usize).div_ceil(3) * 4 + MAX_LINE;

/// Whether the first [`MAX_LINE`] bytes of a longer line start an `fse.attach` request: its
/// `"method"` member, written before `params`, names `fse.attach` (spaces allowed around the
/// colon). Only such a line is read past [`MAX_LINE`], up to [`MAX_ATTACH_LINE`]; once whole,
/// its top-level method is checked again ([`top_method_is_attach`]).
pub fn starts_attach(head: &[u8]) -> bool {
    let mut at = 0;
    while let Some(i) = head[at..].windows(8).position(|w| w == b"\"method\"") {
        let rest = &head[at + i + 8..];
        let rest = rest.trim_ascii_start();
        if let Some(value) = rest.strip_prefix(b":") {
            if value.trim_ascii_start().starts_with(b"\"fse.attach\"") {
                return true;
            }
        }
        at += i + 8;
    }
    false
}

/// Whether a whole request line's top-level `method` is `fse.attach`.
pub fn top_method_is_attach(line: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Method<'a> {
        #[serde(borrow)]
        method: Option<&'a str>,
    }
    serde_json::from_slice::<Method>(line).is_ok_and(|m| m.method == Some("fse.attach"))
}

/// A request's id as its reply carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    /// `null`: the request's id is null, or could not be read.
    Null,
    /// The id's JSON text as the client wrote it, a string or a number, echoed byte for byte
    /// (`9007199254740993`, `1e2` and `123456789012345678901234567890` come back as written).
    Text(Box<str>),
}

impl Id {
    /// The id of a request's `id` member, as the client wrote it, when it may be one: a
    /// string, a number (any JSON number within ±1.8e308, the range of a double: echoed as
    /// written) or null. `raw` must be [`readable`].
    pub(super) fn of(raw: &RawValue) -> Option<Id> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'n') => Some(Id::Null),
            Some(b'"' | b'-' | b'0'..=b'9') => Some(Id::Text(text.into())),
            _ => None,
        }
    }

    /// The id's JSON text.
    pub(super) fn text(&self) -> &[u8] {
        match self {
            Id::Null => b"null",
            Id::Text(t) => t.as_bytes(),
        }
    }
}

/// Whether serde_json reads `raw`, scanned only (a `RawValue`), as a value: not a lone
/// surrogate escape, a number out of a double's range, nesting too deep. So a request's `id`
/// is refused as any other member would be.
pub(super) fn readable(raw: &RawValue) -> Result<(), serde_json::Error> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<ValidString>(text).map(|_| ()),
        Some(b'-' | b'0'..=b'9') => serde_json::from_str::<f64>(text).map(|_| ()),
        Some(b'[' | b'{') => {
            // Read inside brackets: as deep as it was inside the request object.
            serde_json::from_str::<Value>(&format!("[{text}]")).map(|_| ())
        }
        _ => Ok(()),
    }
}

/// A JSON string checked (escapes and surrogates) without being kept.
struct ValidString;

impl<'de> serde::Deserialize<'de> for ValidString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Check;
        impl serde::de::Visitor<'_> for Check {
            type Value = ValidString;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, _: &str) -> Result<ValidString, E> {
                Ok(ValidString)
            }
        }
        d.deserialize_str(Check)
    }
}

/// One reply: `fse_formats::api::Response` as written, its result already JSON text.
#[derive(Debug)]
pub struct Reply {
    /// The request's id (null when it could not be read).
    pub id: Id,
    /// Success value.
    pub result: Option<JsonText>,
    /// Failure.
    pub error: Option<ErrorObject>,
}

impl Reply {
    /// A success.
    pub fn ok(id: Id, result: JsonText) -> Self {
        Reply {
            id,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(id: Id, error: ErrorObject) -> Self {
        Reply {
            id,
            result: None,
            error: Some(error),
        }
    }

    /// The reply's line, newline included: the id and the result's text go in as they are.
    pub fn to_line(&self) -> Vec<u8> {
        let result = self.result.as_ref().map_or(0, |r| r.as_str().len());
        let id = self.id.text();
        let mut out = Vec::with_capacity(64 + id.len() + result);
        out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        out.extend_from_slice(id);
        let written = match (&self.result, &self.error) {
            (Some(r), _) => {
                out.extend_from_slice(br#","result":"#);
                out.extend_from_slice(r.as_str().as_bytes());
                Ok(())
            }
            (None, Some(e)) => {
                out.extend_from_slice(br#","error":"#);
                serde_json::to_writer(&mut out, e)
            }
            (None, None) => {
                out.extend_from_slice(br#","result":null"#);
                Ok(())
            }
        };
        if written.is_err() {
            out.clear();
            out.extend_from_slice(UNENCODABLE);
            out.push(b'\n');
            return out;
        }
        out.extend_from_slice(b"}\n");
        out
    }
}

/// What goes out when a reply cannot be encoded.
const UNENCODABLE: &[u8] =
    br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"unencodable reply"}}"#;

/// `v` as one line, newline included.
pub(super) fn encode_line(v: &impl serde::Serialize) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_else(|_| UNENCODABLE.to_vec());
    out.push(b'\n');
    out
}

/// The strings of `v` longer than [`SHOWN`] bytes (those a message may not echo whole),
/// wiped when dropped.
pub(super) fn long_strings(v: Option<&Value>, out: &mut Vec<zeroize::Zeroizing<String>>) {
    match v {
        Some(Value::String(s)) if s.len() > SHOWN => out.push(zeroize::Zeroizing::new(s.clone())),
        Some(Value::Array(a)) => a.iter().for_each(|v| long_strings(Some(v), out)),
        Some(Value::Object(o)) => o.values().for_each(|v| long_strings(Some(v), out)),
        _ => {}
    }
}

/// `message` with every value of `long` it echoes cut to [`SHOWN`] characters ([`shown`]):
/// the refusals made deeper (the sheet's checks, the pricing rules) name the value whole.
/// A run of more than [`SHOWN`] characters without a space left after that (a value echoed
/// changed, say escaped), and not cut already, is cut the same way.
pub(super) fn cut_echoes(message: &str, long: &[zeroize::Zeroizing<String>]) -> String {
    if message.chars().nth(SHOWN).is_none() {
        return message.to_string();
    }
    let mut out = message.to_string();
    for value in long {
        if value.chars().nth(SHOWN).is_some() && out.contains(value.as_str()) {
            out = out.replace(value.as_str(), &shown(value));
        }
    }
    let mut cut = String::with_capacity(out.len());
    for (i, word) in out.split(' ').enumerate() {
        if i > 0 {
            cut.push(' ');
        }
        // A word holding `…` holds a value cut already.
        if word.contains('…') {
            cut.push_str(word);
        } else {
            cut.push_str(&shown(word));
        }
    }
    cut
}

/// Wipes every string of a request's members (a PIN must not linger in memory).
pub(super) fn scrub_members(members: &mut Map<String, Value>) {
    members.values_mut().for_each(scrub);
}

/// A request's envelope, checked.
pub(super) struct Envelope {
    /// The id to answer with; `None` for a notification (no `id` member).
    pub id: Option<Id>,
    /// The method named.
    pub method: String,
    /// The parameters (an object, an array, or none).
    pub params: Option<Value>,
}

/// Takes the envelope out of a request object: `id` (optional) a string, a number or null and
/// given once, no member given twice outside `params`, `jsonrpc` `"2.0"`, `method` a string,
/// `params` (optional) an object or an array. A refusal is the `INVALID_REQUEST` reply, with
/// the request's id when it could be read.
pub(super) fn envelope(
    raw_id: Option<&RawValue>,
    id_twice: bool,
    obj: &mut Map<String, Value>,
    duplicate: Option<&request::Duplicate>,
) -> Result<Envelope, Box<Reply>> {
    let refuse = |id: Id, message: &str, field: &str| {
        Box::new(Reply::err(
            id,
            ErrorObject::new(api::INVALID_REQUEST, message, Some(field)),
        ))
    };
    if id_twice {
        return Err(refuse(
            Id::Null,
            "id is given twice: each member of a request once",
            "id",
        ));
    }
    let id = match raw_id.map(Id::of) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            return Err(refuse(
                Id::Null,
                "id must be a string, a number or null",
                "id",
            ))
        }
    };
    let reply_id = id.clone().unwrap_or(Id::Null);
    if let Some(at) = duplicate.and_then(request::Duplicate::outside_params) {
        let field = shown(&at);
        return Err(refuse(
            reply_id,
            &format!("{field} is given twice: each member of a request once"),
            &field,
        ));
    }
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        _ => return Err(refuse(reply_id, "jsonrpc must be \"2.0\"", "jsonrpc")),
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => return Err(refuse(reply_id, "method must be a string", "method")),
        None => return Err(refuse(reply_id, "method is missing", "method")),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => None,
        Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
        Some(mut other) => {
            scrub(&mut other);
            return Err(refuse(reply_id, "params must be an object", "params"));
        }
    };
    Ok(Envelope { id, method, params })
}

/// Longest part of a client's value a message echoes, in characters.
pub(super) const SHOWN: usize = 200;

/// `text`, cut to [`SHOWN`] characters: a message names what is wrong without echoing a whole
/// 64 KiB line.
pub(super) fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Overwrites every string of a JSON value (the PIN must not linger in memory): fsed's
/// requests wiped as the client crate wipes them before they go, by the same function.
pub use fsed_client::scrub;

/// A request line read: its envelope, and what the parse noticed.
pub(super) struct Request {
    /// The envelope, checked.
    pub envelope: Envelope,
    /// Where a member is given twice (in `params`: the request is refused by its method).
    pub duplicate: Option<Duplicate>,
    /// The longest string value, in bytes.
    pub longest: usize,
}

/// Reads one line into a request. `Err(None)` for an empty line; `Err(Some(reply))` for a line
/// refused before its method is looked at: not UTF-8, not JSON, not an object, a bad envelope.
/// What is left of the object (and all of it when refused) is wiped: it may hold a PIN.
pub(super) fn read(line: &[u8]) -> Result<Request, Option<Reply>> {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t.trim(),
        Err(e) => {
            return Err(Some(Reply::err(
                Id::Null,
                ErrorObject::new(
                    api::PARSE_ERROR,
                    format!(
                        "request is not UTF-8 (invalid byte at offset {})",
                        e.valid_up_to()
                    ),
                    None,
                ),
            )))
        }
    };
    if text.is_empty() {
        return Err(None);
    }
    let mut found = request::Found::default();
    let (raw_id, mut members) = match request::parse(text, &mut found) {
        Ok(request::Parsed::Object { id, members }) => (id, members),
        Ok(request::Parsed::NotObject) => {
            return Err(Some(Reply::err(
                Id::Null,
                ErrorObject::new(
                    api::INVALID_REQUEST,
                    "a request is one JSON object per line (batches are not supported)",
                    None,
                ),
            )))
        }
        Err(e) => {
            return Err(Some(Reply::err(
                Id::Null,
                ErrorObject::new(api::PARSE_ERROR, format!("invalid JSON: {e}"), None),
            )))
        }
    };
    let duplicate = found.duplicate();
    let envelope = envelope(raw_id, found.id_twice, &mut members, duplicate.as_ref());
    // What is left of the object (and all of it when refused) may hold a PIN.
    scrub_members(&mut members);
    match envelope {
        Ok(envelope) => Ok(Request {
            envelope,
            duplicate,
            longest: found.longest,
        }),
        Err(refused) => Err(Some(*refused)),
    }
}

#[cfg(test)]
mod tests;
