//! The framing's tests: lines refused by what is wrong with them, the envelope checked, ids
//! echoed as written, members given twice, long values echoed cut.

use fse_formats::api;
use serde_json::{json, Value};

use std::sync::atomic::Ordering;

use super::{cut_echoes, shown};
use crate::api::test_support::{ask, ask_text, context};
use crate::api::{handle_line, Conn};

#[tokio::test]
async fn bad_lines_get_errors_that_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir);
    let r = ask(&ctx, "{oops").await;
    assert_eq!(r["error"]["code"], json!(api::PARSE_ERROR));
    assert_eq!(r["id"], Value::Null);
    let r = ask(&ctx, r#"{"jsonrpc":"2.0","id":1}"#).await;
    assert_eq!(r["error"]["code"], json!(api::INVALID_REQUEST));
    assert_eq!(r["error"]["data"]["field"], json!("method"));
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"1.0","id":1,"method":"system.version"}"#,
    )
    .await;
    assert_eq!(r["error"]["data"]["field"], json!("jsonrpc"));
    let r = ask(&ctx, r#"{"jsonrpc":"2.0","id":2,"method":"nope"}"#).await;
    assert_eq!(r["error"]["code"], json!(api::METHOD_NOT_FOUND));
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":3,"method":"fse.create","params":{}}"#,
    )
    .await;
    assert_eq!(r["error"]["code"], json!(api::INVALID_PARAMS));
    assert_eq!(r["error"]["data"]["field"], json!("acts"));
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":4,"method":"fse.create","params":{"act":{"code":"G"},"extra":1}}"#,
    )
    .await;
    assert_eq!(r["error"]["data"]["field"], json!("extra"));
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":5,"method":"cards.verify_pin","params":{"pin":"12"}}"#,
    )
    .await;
    assert_eq!(r["error"]["data"]["field"], json!("pin"));
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":6,"method":"cards.verify_pin","params":{"pin":"1234"}}"#,
    )
    .await;
    assert_eq!(r["error"]["data"]["name"], json!("CARD_ABSENT"));
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":7,"method":"fse.create","params":{"act":{"code":"G"}}}"#,
    )
    .await;
    assert_eq!(r["error"]["data"]["name"], json!("CARD_ABSENT"));
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":8,"method":"fse.get","params":{"id":99}}"#,
    )
    .await;
    assert_eq!(r["error"]["data"]["name"], json!("NOT_FOUND"));
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":9,"method":"system.version"}"#,
    )
    .await;
    assert_eq!(r["result"]["name"], json!("fsed"));
    let mut note = br#"{"jsonrpc":"2.0","method":"system.version"}"#.to_vec();
    assert!(
        handle_line(&ctx, &mut Conn::default(), &mut note)
            .await
            .is_none(),
        "notifications get no reply"
    );
}

#[tokio::test]
async fn the_envelope_is_checked_and_the_id_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir);
    let refused = |r: &Value, code: i64, field: Option<&str>| {
        assert_eq!(r["error"]["code"], json!(code), "{r}");
        assert_eq!(r["error"]["data"]["field"].as_str(), field, "{r}");
    };
    // A null id is an id: the request is answered, with it.
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":null,"method":"system.version"}"#,
    )
    .await;
    assert_eq!(
        (r["id"].clone(), r["result"]["api"].clone()),
        (Value::Null, json!(1))
    );
    assert!(r.as_object().unwrap().contains_key("id"), "{r}");
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":"a-1","method":"system.version"}"#,
    )
    .await;
    assert_eq!(r["id"], json!("a-1"));
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":{"n":1},"method":"system.version"}"#,
    )
    .await;
    refused(&r, api::INVALID_REQUEST, Some("id"));
    assert_eq!(r["id"], Value::Null);
    let r = ask(
        &ctx,
        r#"[{"jsonrpc":"2.0","id":1,"method":"system.version"}]"#,
    )
    .await;
    refused(&r, api::INVALID_REQUEST, None);
    let r = ask(&ctx, r#"["2.0",1,"system.version"]"#).await;
    refused(&r, api::INVALID_REQUEST, None);
    let r = ask(&ctx, r#"{"jsonrpc":"2.0","id":2,"method":7}"#).await;
    refused(&r, api::INVALID_REQUEST, Some("method"));
    assert_eq!(r["id"], json!(2));
    let r = ask(&ctx, r#"{"id":3,"method":"system.version"}"#).await;
    refused(&r, api::INVALID_REQUEST, Some("jsonrpc"));
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":4,"method":"fse.get","params":"x"}"#,
    )
    .await;
    refused(&r, api::INVALID_REQUEST, Some("params"));
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":5,"method":"fse.get","params":[5]}"#,
    )
    .await;
    refused(&r, api::INVALID_PARAMS, Some("params"));
    let r = ask(&ctx, "\u{feff}{}").await;
    assert_eq!(r["error"]["code"], json!(api::PARSE_ERROR), "{r}");
    let mut bad = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}".to_vec();
    let r = handle_line(&ctx, &mut Conn::default(), &mut bad)
        .await
        .unwrap();
    assert_eq!(r.error.unwrap().code, api::PARSE_ERROR);
    // Blank lines and notifications, even of unknown methods, get no reply.
    for line in ["", "  \t", r#"{"jsonrpc":"2.0","method":"no.such"}"#] {
        let mut bytes = line.as_bytes().to_vec();
        assert!(
            handle_line(&ctx, &mut Conn::default(), &mut bytes)
                .await
                .is_none(),
            "{line}"
        );
    }
}

/// Request lines with a member given twice in their envelope: the member named, and the id
/// answered (null when the id itself is given twice).
fn envelope_twice() -> [(&'static str, &'static str, Value); 8] {
    [
        (
            r#"{"":7,"jsonrpc":"2.0","id":3,"method":"system.version","":7}"#,
            r#""""#,
            json!(3),
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"system.version","method":"cards.list"}"#,
            "method",
            json!(2),
        ),
        (
            r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":3,"method":"system.version"}"#,
            "jsonrpc",
            json!(3),
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"fse.get","params":{"id":1},"params":{"id":2}}"#,
            "params",
            json!(4),
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"system.version","x":{"y":1,"y":1}}"#,
            "x.y",
            json!(5),
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"id":7,"method":"system.version"}"#,
            "id",
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"id":6,"method":"system.version"}"#,
            "id",
            Value::Null,
        ),
        // The id given twice decides, even after another member given twice.
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"fse.list","params":{"a":1,"a":2},"id":7}"#,
            "id",
            Value::Null,
        ),
    ]
}

#[tokio::test]
async fn a_member_given_twice_is_refused_by_name_not_taken_last() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir);
    let refused = |r: &Value, code: i64, field: &str| {
        assert_eq!(r["error"]["code"], json!(code), "{r}");
        assert_eq!(r["error"]["data"]["field"], json!(field), "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("twice"),
            "{r}"
        );
    };
    // Inside the parameters: INVALID_PARAMS naming the member by its path, with the id.
    for (params, field) in [
        (r#"{"acts":[{"code":"G"}],"acts":[{"code":"C"}]}"#, "acts"),
        (r#"{"act":{"code":"G","code":"C"}}"#, "act.code"),
        (
            r#"{"acts":[{"code":"G"},{"code":"G","quantity":1,"quantity":2}]}"#,
            "acts[1].quantity",
        ),
        (
            r#"{"act":{"code":"G","prescriber":{"date":"20260101","date":"20260102"}}}"#,
            "act.prescriber.date",
        ),
        // The first member given twice is named, even when a later one is too.
        (
            r#"{"ald":true,"ald":false,"act":{"code":"G","code":"C"}}"#,
            "ald",
        ),
        // A member named "" is named `""`, never by an empty field.
        (r#"{"act":{"":1,"":2}}"#, r#"act."""#),
    ] {
        let line =
            format!(r#"{{"jsonrpc":"2.0","id":"d","method":"fse.create","params":{params}}}"#);
        let r = ask(&ctx, &line).await;
        refused(&r, api::INVALID_PARAMS, field);
        assert_eq!(r["id"], json!("d"), "{r}");
    }
    // Positional parameters with a member twice: the parameters at fault.
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":1,"method":"fse.get","params":[{"id":1,"id":2}]}"#,
    )
    .await;
    refused(&r, api::INVALID_PARAMS, "params");
    // In the envelope: INVALID_REQUEST naming the member, with the id when it is readable.
    for (line, field, id) in envelope_twice() {
        let r = ask(&ctx, line).await;
        refused(&r, api::INVALID_REQUEST, field);
        assert_eq!(r["id"], id, "{line}: {r}");
    }
    // A name of 5,000 characters given twice is named cut.
    let long = "n".repeat(5_000);
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":8,"method":"fse.list","params":{{"{long}":1,"{long}":2}}}}"#
    );
    let r = ask(&ctx, &line).await;
    assert_eq!(r["error"]["code"], json!(api::INVALID_PARAMS), "{r}");
    let field = r["error"]["data"]["field"].as_str().unwrap();
    // 200 characters of the name, then the ellipsis.
    assert_eq!(field.chars().count(), 201, "{field}");
    assert!(r["error"]["message"].as_str().unwrap().chars().count() < 300);
    // A notification with a member twice in its parameters is not run, and not answered.
    let mut note =
        br#"{"jsonrpc":"2.0","method":"lots.close","params":{"practitioner_id":"a","practitioner_id":"b"}}"#
            .to_vec();
    assert!(handle_line(&ctx, &mut Conn::default(), &mut note)
        .await
        .is_none());
    assert!(!ctx.close_now.load(Ordering::SeqCst), "lots.close ran");
    // The same names in different objects are no duplicate.
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":9,"method":"fse.list","params":{"limit":1,"after_id":0}}"#,
    )
    .await;
    assert!(r["result"].is_array(), "{r}");
}

#[tokio::test]
async fn the_examples_of_api_md_for_these_refusals_are_what_fsed_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir);
    let md = include_str!("../../../API.md");
    for (request, reply_id) in [
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"fse.create","params":{"act":{"code":"G","code":"C"}}}"#,
            9,
        ),
        (
            r#"{"jsonrpc":"2.0","id":10,"method":"fse.create","params":{"act":{"code":"G","excess_cents":1500.0}}}"#,
            10,
        ),
        (
            r#"{"jsonrpc":"2.0","id":11,"method":"system.version","method":"fse.get"}"#,
            11,
        ),
    ] {
        let reply = ask_text(&ctx, request).await;
        assert!(
            md.contains(reply.trim_end()),
            "API.md lacks fsed's reply {reply} (id {reply_id})"
        );
    }
}

#[tokio::test]
async fn a_numeric_id_comes_back_exactly_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir);
    for id in [
        "0",
        "-0",
        "7",
        // 2^53 + 1: a double would make it 9007199254740992.
        "9007199254740993",
        // u64::MAX, i64::MIN.
        "18446744073709551615",
        "-9223372036854775808",
        // Beyond 64 bits.
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
        "1.5",
        "1.50",
        "1e2",
        "1E+2",
        "1e-400",
        "1.7976931348623157e308",
        r#""a-1""#,
        r#""\u00e9\"""#,
    ] {
        let reply = ask_text(
            &ctx,
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"system.version"}}"#),
        )
        .await;
        let expected = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"#);
        assert!(reply.starts_with(&expected), "{id}: {reply}");
        // The line is JSON all the same.
        let _: Value = serde_json::from_str(&reply).unwrap();
    }
    // An error reply carries it the same way.
    let reply = ask_text(
        &ctx,
        r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"no.such"}"#,
    )
    .await;
    assert!(
        reply.starts_with(r#"{"jsonrpc":"2.0","id":18446744073709551615,"error":"#),
        "{reply}"
    );
    // Beyond a double's range the line is not JSON fsed reads, as anywhere in a request.
    for id in ["1e400", "-1e400"] {
        let r = ask(
            &ctx,
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"system.version"}}"#),
        )
        .await;
        assert_eq!(r["error"]["code"], json!(api::PARSE_ERROR), "{id}: {r}");
        assert_eq!(r["id"], Value::Null, "{r}");
    }
    // What serde_json cannot read as a value is a parse error in the id as anywhere: a
    // lone surrogate, nesting past its limit (the same depth as in the whole line).
    let r = ask(
        &ctx,
        r#"{"jsonrpc":"2.0","id":"\ud800","method":"system.version"}"#,
    )
    .await;
    assert_eq!(r["error"]["code"], json!(api::PARSE_ERROR), "{r}");
    for depth in 120..135 {
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let line = format!(r#"{{"jsonrpc":"2.0","id":{nested},"method":"fse.get"}}"#);
        let readable = serde_json::from_str::<Value>(&line).is_ok();
        let r = ask(&ctx, &line).await;
        let code = if readable {
            api::INVALID_REQUEST
        } else {
            api::PARSE_ERROR
        };
        assert_eq!(r["error"]["code"], json!(code), "depth {depth}: {r}");
    }
    for id in ["true", "[1]", r#"{"a":1}"#] {
        let r = ask(
            &ctx,
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"system.version"}}"#),
        )
        .await;
        assert_eq!(r["error"]["data"]["field"], json!("id"), "{id}: {r}");
        assert_eq!(r["id"], Value::Null, "{r}");
    }
}

#[tokio::test]
async fn a_long_value_is_echoed_cut_to_200_characters() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir);
    // Of a message, the longest run of one character.
    let run = |m: &str, c: char| {
        m.split(|x| x != c)
            .map(|r| r.chars().count())
            .max()
            .unwrap_or(0)
    };
    let long = "Z".repeat(5_000);
    let lines = [
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{long}"}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"fse.{long}"}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"fse.list","params":{{"state":"{long}"}}}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"fse.list","params":{{"{long}":1}}}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"lots.get","params":{{"lot_id":"{long}"}}}}"#),
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"events.subscribe","params":{{"events":["{long}"]}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"fse.create","params":{{"act":{{"code":5,"{long}":1}}}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"fse.cancel","params":{{"id":1,"reason":"{long}"}}}}"#
        ),
    ];
    for line in &lines {
        let r = ask(&ctx, line).await;
        let message = r["error"]["message"].as_str().unwrap();
        assert!(run(message, 'Z') <= 200, "{message}");
        if run(message, 'Z') == 200 {
            assert!(
                message.contains(&format!("{}…", "Z".repeat(200))),
                "{message}"
            );
        }
        assert!(message.chars().count() < 700, "{message}");
    }
    // The refusals made deeper name the value whole: the reply's message cuts it, with
    // the ellipsis, spaces or not.
    let code = "Z".repeat(5_000);
    let made = format!("unknown act {code} on 2026-11-30");
    let cut = cut_echoes(&made, &[zeroize::Zeroizing::new(code.clone())]);
    assert_eq!(
        cut,
        format!("unknown act {}… on 2026-11-30", "Z".repeat(200))
    );
    let spaced = "A B ".repeat(1_000);
    let made = format!("act 0: {spaced}is not billable");
    let cut = cut_echoes(&made, &[zeroize::Zeroizing::new(spaced.clone())]);
    // The first 200 characters of the value, the ellipsis, and the text after it.
    assert_eq!(
        cut,
        format!("act 0: {}…is not billable", &spaced[..200]),
        "{cut}"
    );
    // A value its check cut already (quoted) is not cut again.
    let quoted = format!("unknown state {:?}", shown(&code));
    assert_eq!(
        cut_echoes(&quoted, &[zeroize::Zeroizing::new(code.clone())]),
        quoted
    );
    // A message already short enough is left alone.
    assert_eq!(cut_echoes("no sheet 9", &[]), "no sheet 9");
}

#[test]
fn only_an_attach_request_may_be_longer_than_a_line() {
    use super::{starts_attach, top_method_is_attach, MAX_ATTACH_LINE};
    // 5 MiB in base64: ⌈5,242,880 / 3⌉ × 4 = 6,990,508, and a line's 65,536 for the rest.
    assert_eq!(MAX_ATTACH_LINE, 6_990_508 + 65_536);
    assert!(starts_attach(
        br#"{"jsonrpc":"2.0","id":1,"method":"fse.attach","params":{"content":"AAAA"#
    ));
    assert!(starts_attach(
        br#"{"id":1, "method" : "fse.attach", "params":{"#
    ));
    assert!(!starts_attach(
        br#"{"jsonrpc":"2.0","id":1,"method":"fse.get","params":{"x":"AAAA"#
    ));
    assert!(!starts_attach(
        br#"{"id":1,"params":{"content":"fse.attach","#
    ));
    // The whole line's own method decides: a nested "method" does not make it an attach.
    assert!(top_method_is_attach(
        br#"{"id":1,"method":"fse.attach","params":{}}"#
    ));
    assert!(!top_method_is_attach(
        br#"{"id":1,"method":"fse.get","params":{"method":"fse.attach"}}"#
    ));
    assert!(!top_method_is_attach(br#"{"id":1,"method":"fse.attach""#));
}
