//! The examples of `daemon/API.md` (its ```json blocks) held to the API description.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::description::Conformance;

/// The JSON lines of the ```json blocks of a Markdown text.
fn json_lines(markdown: &str) -> Vec<Value> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in markdown.lines() {
        match (inside, line.trim()) {
            (false, "```json") => inside = true,
            (true, "```") => inside = false,
            (true, l) if !l.is_empty() => {
                lines.push(serde_json::from_str(l).unwrap_or_else(|e| panic!("API.md: {e}: {l}")))
            }
            _ => {}
        }
    }
    lines
}

#[test]
fn every_example_of_the_api_document_conforms_to_the_description() {
    let c = Conformance::load();
    let md =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../daemon/API.md")).unwrap();
    assert!(
        md.contains("daemon/api.openrpc.json"),
        "API.md names its schema"
    );
    // One reply of each stable code in the errors section.
    let errors = &md[md.find("\n## Errors").unwrap()..md.find("\n## Methods").unwrap()];
    let response = json!({"$ref": "#/components/schemas/ErrorResponse"});
    let mut codes = BTreeSet::new();
    for reply in json_lines(errors) {
        c.check("API.md error example", &response, &reply);
        codes.insert(reply["error"]["code"].as_i64().unwrap());
    }
    assert_eq!(
        codes,
        c.stable_codes(),
        "codes shown (left) and described (right)"
    );
    // Each method's section: a request the description accepts, and its replies.
    let methods = &md[md.find("\n## Methods").unwrap()..];
    let mut documented = BTreeSet::new();
    for section in methods.split("\n### ").skip(1) {
        let (name, body) = section.split_once('\n').unwrap();
        let name = name.trim();
        documented.insert(name.to_string());
        let lines = json_lines(body);
        let mut asked = BTreeSet::new();
        for request in lines
            .iter()
            .filter(|l| l.get("id").is_some() && l.get("method").is_some())
        {
            assert_eq!(request["method"], json!(name), "{name}: {request}");
            let params = request.get("params").cloned().unwrap_or(json!({}));
            c.check(
                &format!("API.md {name} params"),
                &c.params_schema(name),
                &params,
            );
            asked.insert(request["id"].to_string());
        }
        assert!(!asked.is_empty(), "API.md {name}: no request example");
        let mut results = 0;
        for reply in lines.iter().filter(|l| l.get("method").is_none()) {
            assert!(
                asked.contains(&reply["id"].to_string()),
                "{name}: a reply to no request: {reply}"
            );
            if let Some(result) = reply.get("result") {
                c.check(
                    &format!("API.md {name} result"),
                    &c.method(name)["result"]["schema"],
                    result,
                );
                results += 1;
            } else {
                c.check(&format!("API.md {name} error"), &response, reply);
                let code = reply["error"]["code"].as_i64().unwrap();
                assert!(c.method_codes(name).contains(&code), "{name}: {reply}");
            }
        }
        assert!(results > 0, "API.md {name}: no result example");
        let notification = json!({"$ref": "#/components/schemas/Notification"});
        for event in lines.iter().filter(|l| l["method"] == json!("event")) {
            c.check("API.md event", &notification, event);
        }
    }
    assert_eq!(
        documented,
        c.methods(),
        "sections of API.md (left) and methods described (right)"
    );
}
