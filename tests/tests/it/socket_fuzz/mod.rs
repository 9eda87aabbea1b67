//! fsed's socket under a million random and malformed lines: random bytes,
//! invalid UTF-8, embedded NULs, truncated and mutated requests, members of
//! the wrong type, huge numbers, deep nesting, unknown methods, bad
//! parameters, long strings under the line limit and a few lines over it,
//! written pipelined over several connections, each read by its own thread.
//! fsed runs on its virtual reader with no card, so no line can change a
//! card or make a sheet. Each line's reply is predicted from JSON-RPC 2.0
//! alone (none for a blank line or a notification; the id when it can be
//! read; the code of an envelope error) and every reply line must be a
//! well-formed error object, or for the rare valid request a result that
//! conforms to `daemon/api.openrpc.json`. Meanwhile another client asks
//! `system.version` and `queue.stats` and must get right answers; at the end
//! fsed still serves and stops cleanly. The random generator is seeded: the
//! seed is printed, and `FSED_FUZZ_SEED` replays a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

mod oracle;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use oracle::{expect, Expect};
use rand::{Rng, RngCore};
use serde_json::{json, Value};

/// Slots of the virtual reader, Unix sockets in the test's directory (no card is ever shown
/// on them).
const SLOTS: usize = 2;
/// Connections fuzzed at once, and lines written on each.
const CONNECTIONS: usize = 4;
const LINES_PER_CONNECTION: usize = 250_000;
/// fsed's longest request line (`api::MAX_LINE`).
const MAX_LINE: usize = 64 * 1024;

/// Valid requests, the seeds of truncation and mutation.
const TEMPLATES: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"system.version"}"#,
    r#"{"jsonrpc":"2.0","id":"q","method":"queue.stats","params":{}}"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"fse.create","params":{"act":{"code":"G","date":"20261130","modifiers":["MEG"],"excess_cents":0},"tiers_payant":{"amo":true},"idempotency_key":"visit-42"}}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"fse.create","params":{"acts":[{"code":"AMI","coefficient":200,"prescriber":{"national_id":"810000000009","date":"20261128"}}],"degraded":{"reason":"carte oubliée","beneficiary":{"nir":"185057800608491","surname":"DUPONT","given_name":"Jean","birth_date":"19850512","organism":"017510001"}},"expected":{"total_cents":945}}}"#,
    r#"{"jsonrpc":"2.0","id":4,"method":"cards.verify_pin","params":{"pin":"1234","cps_serial":"CPS-0001"}}"#,
    r#"{"jsonrpc":"2.0","id":5,"method":"cards.change_pin","params":{"old_pin":"1234","new_pin":"2468"}}"#,
    r#"{"jsonrpc":"2.0","id":6,"method":"cards.unblock_pin","params":{"puk":"12345678","new_pin":"1234"}}"#,
    r#"{"jsonrpc":"2.0","id":7,"method":"fse.list","params":{"state":"accepted","limit":10,"after_id":0}}"#,
    r#"{"jsonrpc":"2.0","id":8,"method":"fse.get","params":{"id":17}}"#,
    r#"{"jsonrpc":"2.0","id":9,"method":"fse.cancel","params":{"id":17,"reason":"patient left"}}"#,
    r#"{"jsonrpc":"2.0","id":10,"method":"lots.get","params":{"lot_id":"810000000009-00000001"}}"#,
    r#"{"jsonrpc":"2.0","id":11,"method":"returns.list","params":{"lot_id":"810000000009-00000001","limit":5}}"#,
    r#"{"jsonrpc":"2.0","id":12,"method":"fse.proof","params":{"id":1}}"#,
    r#"{"jsonrpc":"2.0","id":13,"method":"lots.close","params":{"practitioner_id":"810000000009"}}"#,
    r#"{"jsonrpc":"2.0","method":"transmit.now"}"#,
    r#"{"jsonrpc":"2.0","id":null,"method":"queue.alarms"}"#,
];

/// Requests that succeed without a card and change nothing.
const VALID: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":"v","method":"system.version"}"#,
    r#"{"jsonrpc":"2.0","id":"v","method":"queue.stats"}"#,
    r#"{"jsonrpc":"2.0","id":"v","method":"queue.alarms","params":{}}"#,
    r#"{"jsonrpc":"2.0","id":"v","method":"lots.list","params":null}"#,
    r#"{"jsonrpc":"2.0","id":"v","method":"cards.list"}"#,
    r#"{"jsonrpc":"2.0","id":"v","method":"fse.list","params":{"limit":3}}"#,
    r#"{"jsonrpc":"2.0","id":"v","method":"returns.list","params":{"limit":1000}}"#,
    r#"{"jsonrpc":"2.0","id":"v","method":"transmit.now"}"#,
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1e308",
    "1e400",
    "-1e400",
    "1.5",
    "2.0",
    "1E-400",
    "0.000000000000000000000000001",
    "4294967296",
    "-2147483649",
    "01",
    "1.",
    ".5",
    "+1",
    "NaN",
    "Infinity",
];

const WORDS: &[&str] = &[
    "2.0",
    "1.0",
    "",
    "G",
    "XYZ",
    "1234",
    "12",
    "12345678",
    "CPS-0001",
    "accepted",
    "lost",
    "treating",
    "nowhere",
    "\\u0000",
    "\\ud800",
    "\\udfff\\ud800",
    "é",
    "\u{1F600}",
    "\\\"",
    "\\n",
    "20261130",
    "2026-11-30",
    "810000000009-00000001",
];

/// SplitMix64: a small seeded generator, fast in a debug build (where ChaCha is not).
struct SplitMix64(u64);

impl RngCore for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// The random lines of one connection.
struct Gen {
    rng: SplitMix64,
    methods: Vec<String>,
    params: Vec<String>,
}

impl Gen {
    fn pick<'a>(&mut self, list: &'a [&'a str]) -> &'a str {
        list[self.rng.gen_range(0..list.len())]
    }

    /// Any name a member might have: a parameter of some method, or not.
    fn member(&mut self) -> String {
        match self.rng.gen_range(0..4) {
            0..=2 => self.params[self.rng.gen_range(0..self.params.len())].clone(),
            _ => self.pick(WORDS).to_string(),
        }
    }

    fn string(&mut self) -> String {
        match self.rng.gen_range(0..10) {
            0 => {
                // Any characters, escaped or not, control characters and NULs included.
                let n = self.rng.gen_range(0..40);
                (0..n)
                    .map(|_| match self.rng.gen_range(0..6) {
                        0 => '\0',
                        1 => char::from(self.rng.gen_range(1u8..32)),
                        2 => self.rng.gen_range('\u{80}'..'\u{7FF}'),
                        _ => char::from(self.rng.gen_range(b' '..=b'~')),
                    })
                    .collect()
            }
            _ => self.pick(WORDS).to_string(),
        }
    }

    /// A JSON text (or almost: numbers out of range, bad escapes) at most `depth` deep.
    fn value(&mut self, depth: u32) -> String {
        let top = if depth == 0 { 5 } else { 8 };
        match self.rng.gen_range(0..top) {
            0 => "null".into(),
            1 => self.pick(&["true", "false"]).into(),
            2 => self.pick(NUMBERS).into(),
            3 => self.rng.gen::<i64>().to_string(),
            4 => format!("\"{}\"", self.string()),
            5 => {
                let n = self.rng.gen_range(0..4);
                let items: Vec<String> = (0..n).map(|_| self.value(depth - 1)).collect();
                format!("[{}]", items.join(","))
            }
            _ => self.object(depth - 1),
        }
    }

    fn object(&mut self, depth: u32) -> String {
        let n = self.rng.gen_range(0..5);
        let members: Vec<String> = (0..n)
            .map(|_| format!("\"{}\":{}", self.member(), self.value(depth)))
            .collect();
        format!("{{{}}}", members.join(","))
    }

    /// A request whose members each may be missing, of the wrong type or unknown.
    fn envelope(&mut self) -> String {
        let mut members = Vec::new();
        match self.rng.gen_range(0..10) {
            0 => {}
            1 => members.push(format!("\"jsonrpc\":{}", self.value(1))),
            _ => members.push("\"jsonrpc\":\"2.0\"".into()),
        }
        match self.rng.gen_range(0..10) {
            0 => {}
            1 => members.push(format!("\"id\":{}", self.value(2))),
            2 => members.push(format!("\"id\":{}", self.pick(NUMBERS))),
            3 => members.push(format!("\"id\":\"{}\"", self.string())),
            _ => members.push(format!("\"id\":{}", self.rng.gen_range(0..1_000_000))),
        }
        match self.rng.gen_range(0..10) {
            0 => {}
            1 => members.push(format!("\"method\":{}", self.value(1))),
            2 => members.push(format!("\"method\":\"{}\"", self.string())),
            _ => {
                let m = self.methods[self.rng.gen_range(0..self.methods.len())].clone();
                members.push(format!("\"method\":\"{m}\""));
            }
        }
        match self.rng.gen_range(0..6) {
            0 => {}
            1 => members.push(format!("\"params\":{}", self.value(3))),
            _ => members.push(format!("\"params\":{}", self.object(3))),
        }
        if self.rng.gen_range(0..10) == 0 {
            members.push(format!("\"{}\":{}", self.member(), self.value(1)));
        }
        // Members in any order, sometimes twice.
        for i in (1..members.len()).rev() {
            members.swap(i, self.rng.gen_range(0..=i));
        }
        if !members.is_empty() && self.rng.gen_range(0..20) == 0 {
            let again = members[0].clone();
            members.push(again);
        }
        format!("{{{}}}", members.join(","))
    }

    /// One line, without its newline.
    fn line(&mut self) -> Vec<u8> {
        let roll = self.rng.gen_range(0..1000);
        let mut bytes = match roll {
            // Random bytes: mostly not UTF-8, NULs included.
            0..=119 => {
                let n = self.rng.gen_range(0..200);
                (0..n).map(|_| self.rng.gen::<u8>()).collect()
            }
            // A valid request cut short.
            120..=239 => {
                let t = self.pick(TEMPLATES).as_bytes();
                t[..self.rng.gen_range(0..t.len())].to_vec()
            }
            // A valid request with a few bytes changed, inserted or removed.
            240..=419 => {
                let mut t = self.pick(TEMPLATES).as_bytes().to_vec();
                for _ in 0..self.rng.gen_range(1..4) {
                    let at = self.rng.gen_range(0..t.len());
                    match self.rng.gen_range(0..3) {
                        0 => t[at] = self.rng.gen(),
                        1 => t.insert(at, self.rng.gen()),
                        _ => {
                            t.remove(at);
                        }
                    }
                    if t.is_empty() {
                        break;
                    }
                }
                t
            }
            // Envelopes and parameters of every type.
            420..=849 => self.envelope().into_bytes(),
            // Deep nesting, over serde_json's limit or not.
            850..=879 => {
                let depth = self.rng.gen_range(1..400);
                let (open, close) = if self.rng.gen() {
                    ("[", "]")
                } else {
                    ("{\"a\":", "}")
                };
                let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                match self.rng.gen_range(0..3) {
                    0 => nested,
                    1 => format!(r#"{{"jsonrpc":"2.0","id":7,"method":"fse.create","params":{{"act":{nested}}}}}"#),
                    _ => format!(r#"{{"jsonrpc":"2.0","id":{nested},"method":"fse.get"}}"#),
                }
                .into_bytes()
            }
            // A valid request with invalid UTF-8 or a raw NUL inside a string.
            880..=909 => {
                let mut t = self.pick(TEMPLATES).as_bytes().to_vec();
                let quote = t.iter().rposition(|&b| b == b'"').unwrap_or(0);
                let junk: &[u8] = self.pick(&["\u{0}", "\u{1}"]).as_bytes();
                let bad: &[&[u8]] = &[
                    b"\xff",
                    b"\xc3",
                    b"\xed\xa0\x80",
                    b"\xf8\x88\x80\x80\x80",
                    junk,
                ];
                let insert = bad[self.rng.gen_range(0..bad.len())];
                t.splice(quote..quote, insert.iter().copied());
                t
            }
            // Blank lines, whitespace, a carriage return.
            910..=929 => self
                .pick(&["", " ", "\t \t", "\r", "\u{a0}", "\u{2028}"])
                .into(),
            // Valid requests: they must be answered with a conforming result.
            930..=949 => self.pick(VALID).into(),
            // Now and then a long string, under the line limit.
            950 if self.rng.gen_range(0..10) == 0 => {
                let n = self.rng.gen_range(1_000..MAX_LINE - 200);
                format!(
                    r#"{{"jsonrpc":"2.0","id":"long","method":"lots.get","params":{{"lot_id":"{}"}}}}"#,
                    "x".repeat(n)
                )
                .into_bytes()
            }
            // Rarely, a line over the limit: refused, then the connection goes on.
            953 if self.rng.gen_range(0..40) == 0 => {
                let n = self.rng.gen_range(MAX_LINE + 1..3 * MAX_LINE);
                vec![b'{'; n]
            }
            // Unknown methods and notifications of every kind.
            _ => {
                let method = if self.rng.gen() {
                    self.string()
                } else {
                    format!(
                        "{}.{}",
                        self.pick(&["fse", "cards", "rpc", "system"]),
                        self.string()
                    )
                };
                let id = if self.rng.gen() {
                    format!("\"id\":{},", self.rng.gen::<u32>())
                } else {
                    String::new()
                };
                format!(
                    r#"{{"jsonrpc":"2.0",{id}"method":"{method}","params":{}}}"#,
                    self.object(2)
                )
                .into_bytes()
            }
        };
        // The newline ends the line: one inside it would make two.
        bytes.retain(|&b| b != b'\n');
        bytes
    }
}

/// The description's method names, result schemas, declared errors and code names.
struct Description {
    doc: Value,
    methods: BTreeSet<String>,
    params: Vec<String>,
    declared: BTreeMap<String, BTreeSet<i64>>,
    names: BTreeMap<i64, String>,
}

impl Description {
    fn load() -> Description {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../daemon/api.openrpc.json");
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let names: BTreeMap<i64, String> = doc["components"]["errors"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, e)| (e["code"].as_i64().unwrap(), name.clone()))
            .collect();
        let mut methods = BTreeSet::new();
        let mut params = BTreeSet::new();
        let mut declared = BTreeMap::new();
        for m in doc["methods"].as_array().unwrap() {
            let name = m["name"].as_str().unwrap().to_string();
            for p in m["params"].as_array().unwrap() {
                params.insert(p["name"].as_str().unwrap().to_string());
            }
            let codes = m["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let r = e["$ref"].as_str().unwrap();
                    let n = r.rsplit('/').next().unwrap();
                    doc["components"]["errors"][n]["code"].as_i64().unwrap()
                })
                .collect();
            declared.insert(name.clone(), codes);
            methods.insert(name);
        }
        for extra in ["code", "date", "coefficient", "nir", "amo", "reason", "x"] {
            params.insert(extra.to_string());
        }
        Description {
            doc,
            methods,
            params: params.into_iter().collect(),
            declared,
            names,
        }
    }

    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let root = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        jsonschema::draft7::new(&root).unwrap()
    }

    fn result_validator(&self, method: &str) -> jsonschema::Validator {
        let m = self.doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == json!(method))
            .unwrap();
        self.validator(&m["result"]["schema"])
    }
}

/// Checks one reply line against what its request line expected; returns the error code, if
/// any. `sample` asks for the full schema validation of an error line.
fn check_reply(
    d: &Description,
    checked: &mut BTreeMap<String, jsonschema::Validator>,
    reply: &Value,
    expected: &Expect,
    line: &[u8],
    sample: bool,
) -> Option<i64> {
    let Expect::Reply { id, code, method } = expected else {
        unreachable!("only replies are checked");
    };
    let fail = |why: &str| -> ! {
        let line = String::from_utf8_lossy(line);
        panic!("{why}\nline: {line}\nreply: {reply}")
    };
    let obj = reply.as_object().unwrap_or_else(|| fail("not an object"));
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        fail("jsonrpc is not 2.0");
    }
    if obj.get("id") != Some(id) {
        fail(&format!("id: expected {id}"));
    }
    match (obj.get("result"), obj.get("error")) {
        (Some(result), None) => {
            if code.is_some() {
                fail("a result where an error was due");
            }
            let method = method.as_deref().unwrap();
            let v = checked
                .entry(method.to_string())
                .or_insert_with(|| d.result_validator(method));
            if let Some(e) = v.iter_errors(result).next() {
                fail(&format!("{method} result does not conform: {e}"));
            }
            if obj.len() != 3 {
                fail("members beside jsonrpc, id and result");
            }
            None
        }
        (None, Some(e)) => {
            if obj.len() != 3 {
                fail("members beside jsonrpc, id and error");
            }
            let c = e["code"].as_i64().unwrap_or_else(|| fail("code"));
            let name = d.names.get(&c).unwrap_or_else(|| fail("not a stable code"));
            if e["data"]["name"] != json!(name) {
                fail("data.name is not the code's name");
            }
            if e["message"].as_str().is_none_or(str::is_empty) {
                fail("no message");
            }
            if e["data"].get("field").is_some_and(|f| !f.is_string()) {
                fail("data.field is not a string");
            }
            match (code, method) {
                (Some(due), _) if *due != c => fail(&format!("code: expected {due}")),
                (None, Some(m)) if !d.declared[m].contains(&c) => {
                    fail(&format!("{m} answered a code it does not declare"))
                }
                _ => {}
            }
            if sample {
                let v = checked.entry("ErrorResponse".into()).or_insert_with(|| {
                    d.validator(&json!({"$ref": "#/components/schemas/ErrorResponse"}))
                });
                if let Some(err) = v.iter_errors(reply).next() {
                    fail(&format!("error line does not conform: {err}"));
                }
            }
            Some(c)
        }
        _ => fail("not exactly one of result and error"),
    }
}

/// Fuzzes one connection with `lines` lines from `seed`; returns how many replies of each
/// error code it got (0: results).
fn fuzz_connection(
    socket: &std::path::Path,
    d: Arc<Description>,
    seed: u64,
    lines: usize,
) -> BTreeMap<i64, usize> {
    let stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let (tx, rx) = mpsc::sync_channel::<(Expect, Vec<u8>)>(100_000);
    let write_half = stream.try_clone().unwrap();
    let writer_d = Arc::clone(&d);
    let writer = std::thread::spawn(move || {
        let mut gen = Gen {
            rng: SplitMix64(seed),
            methods: writer_d.methods.iter().cloned().collect(),
            params: writer_d.params.clone(),
        };
        let mut out = BufWriter::with_capacity(256 * 1024, write_half);
        for _ in 0..lines {
            let line = gen.line();
            let expected = expect(&line, &writer_d.methods);
            if expected != Expect::Nothing {
                let shown = line[..line.len().min(300)].to_vec();
                tx.send((expected, shown)).unwrap();
            }
            out.write_all(&line).unwrap();
            out.write_all(b"\n").unwrap();
        }
        let end = br#"{"jsonrpc":"2.0","id":"end","method":"system.version"}"#;
        tx.send((expect(end, &writer_d.methods), end.to_vec()))
            .unwrap();
        out.write_all(end).unwrap();
        out.write_all(b"\n").unwrap();
        out.flush().unwrap();
    });
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut checked = BTreeMap::new();
    let mut codes = BTreeMap::new();
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf);
        assert!(
            matches!(read, Ok(k) if k > 0),
            "the connection ended after {n} replies: {read:?}"
        );
        let reply: Value = serde_json::from_slice(&buf).unwrap_or_else(|e| {
            panic!("reply is not JSON ({e}): {}", String::from_utf8_lossy(&buf))
        });
        if reply.get("method") == Some(&json!("event")) {
            continue;
        }
        let (expected, line) = rx.recv().expect("a reply no line asked for");
        n += 1;
        let code = check_reply(
            &d,
            &mut checked,
            &reply,
            &expected,
            &line,
            n.is_multiple_of(997),
        );
        // Code 0 counts the results.
        *codes.entry(code.unwrap_or(0)).or_default() += 1;
        if reply["id"] == json!("end") {
            break;
        }
    }
    writer.join().expect("the writer");
    assert!(rx.try_recv().is_err(), "replies missing");
    codes
}

#[test]
fn a_million_malformed_lines_get_well_formed_errors_and_fsed_keeps_serving() {
    let seed: u64 = std::env::var("FSED_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("socket_fuzz seed {seed} (FSED_FUZZ_SEED={seed} replays this run)");
    let d = Arc::new(Description::load());
    let dir = tempfile::tempdir().unwrap();
    let (mut fsed, mut rpc) = common::start_fsed_virtual(dir.path(), SLOTS, "", &[]);
    let socket = dir.path().join("fsed.sock");

    // Another client, meanwhile, gets right answers.
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let (done, answered, d) = (Arc::clone(&done), Arc::clone(&answered), Arc::clone(&d));
        let mut client = common::Rpc::connect(&socket, Duration::from_secs(5));
        std::thread::spawn(move || {
            let stats = d.result_validator("queue.stats");
            while !done.load(Ordering::SeqCst) {
                let v = client.ok("system.version", json!({}));
                assert_eq!(
                    (v["name"].as_str(), v["api"].as_i64()),
                    (Some("fsed"), Some(1))
                );
                let s = client.ok("queue.stats", json!({}));
                assert!(stats.is_valid(&s), "queue.stats: {s}");
                assert_eq!(s["sheets"]["accepted"], json!(0), "no line made a sheet");
                answered.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let fuzzers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let (socket, d) = (socket.clone(), Arc::clone(&d));
            let seed = seed.wrapping_add(i as u64);
            std::thread::spawn(move || fuzz_connection(&socket, d, seed, LINES_PER_CONNECTION))
        })
        .collect();
    let mut codes = BTreeMap::<i64, usize>::new();
    for (i, f) in fuzzers.into_iter().enumerate() {
        match f.join() {
            Ok(c) => c
                .into_iter()
                .for_each(|(k, n)| *codes.entry(k).or_default() += n),
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "connection {i} (seed {}): {why}",
                    seed.wrapping_add(i as u64)
                );
            }
        }
    }
    // A round trip of the other client that began while the fuzzing ran, and one after.
    let during = answered.load(Ordering::SeqCst);
    let after_fuzz = during + 1;
    common::wait_for(
        "the other client's answers",
        Duration::from_secs(30),
        || (answered.load(Ordering::SeqCst) >= after_fuzz).then_some(()),
    );
    done.store(true, Ordering::SeqCst);
    monitor
        .join()
        .unwrap_or_else(|_| panic!("the other client got a wrong answer (seed {seed})"));
    println!("replies by code: {codes:?}; the other client's round trips: {during}");
    assert!(
        during > 0,
        "the other client got no answer while the lines were sent (seed {seed})"
    );
    for envelope_code in [0, -32700, -32600, -32601, -32602] {
        assert!(
            codes.contains_key(&envelope_code),
            "no line got {envelope_code} (0: a result) (seed {seed}): {codes:?}"
        );
    }

    // Over the limit on a fresh line: refused and the connection goes on.
    let mut big = vec![b'x'; MAX_LINE + 1];
    big.push(b'\n');
    rpc.send_bytes(&big);
    let refused = rpc.next_line(Duration::from_secs(10)).unwrap();
    assert_eq!(refused["error"]["code"], json!(-32600), "{refused}");
    assert_eq!(refused["error"]["data"]["limit"], json!(MAX_LINE));
    // A line of exactly the limit is served.
    let framed = |id: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":"edge","method":"lots.get","params":{{"lot_id":"{id}"}}}}"#
        )
    };
    let at_limit = framed(&"y".repeat(MAX_LINE - framed("").len()));
    assert_eq!(at_limit.len(), MAX_LINE);
    let r = rpc.raw(&at_limit);
    assert_eq!(r["error"]["data"]["name"], json!("NOT_FOUND"), "{r}");
    assert_eq!(rpc.ok("system.version", json!({}))["name"], json!("fsed"));

    assert!(fsed.child.try_wait().unwrap().is_none(), "fsed is running");
    drop(rpc);
    assert!(fsed.terminate().success(), "fsed stops cleanly");
}
