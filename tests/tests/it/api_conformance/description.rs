//! The API description (`daemon/api.openrpc.json`) the conformance test holds fsed to, and
//! what the test saw of it: the methods called and the error codes produced, each checked
//! against its schema.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::common::Rpc;

/// The description, and what the test saw of it.
pub(super) struct Conformance {
    pub(super) doc: Value,
    /// Methods called with a result that conforms.
    pub(super) called: BTreeSet<String>,
    /// Error codes produced, with a conforming error object.
    pub(super) codes: BTreeSet<i64>,
}

impl Conformance {
    pub(super) fn load() -> Conformance {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../daemon/api.openrpc.json");
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(
            doc["openrpc"].as_str().unwrap().starts_with("1.2."),
            "OpenRPC 1.2"
        );
        Conformance {
            doc,
            called: BTreeSet::new(),
            codes: BTreeSet::new(),
        }
    }

    /// A validator of `schema`, whose `#/components/…` references point into the description.
    pub(super) fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let root = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        jsonschema::draft7::new(&root).unwrap_or_else(|e| panic!("schema {schema}: {e}"))
    }

    /// Whether `instance` conforms to `schema`; the reasons when it does not.
    pub(super) fn conforms(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let v = self.validator(schema);
        let errors: Vec<String> = v
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n  "))
        }
    }

    pub(super) fn check(&self, what: &str, schema: &Value, instance: &Value) {
        if let Err(why) = self.conforms(schema, instance) {
            panic!("{what} does not conform:\n  {why}\ninstance: {instance}");
        }
    }

    pub(super) fn method(&self, name: &str) -> &Value {
        self.doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == json!(name))
            .unwrap_or_else(|| panic!("{name} is not described"))
    }

    pub(super) fn methods(&self) -> BTreeSet<String> {
        self.doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// The stable codes the description lists.
    pub(super) fn stable_codes(&self) -> BTreeSet<i64> {
        self.doc["components"]["errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|e| e["code"].as_i64().unwrap())
            .collect()
    }

    /// A method's parameters as one object schema (by name).
    pub(super) fn params_schema(&self, method: &str) -> Value {
        let mut properties = serde_json::Map::new();
        let mut required = Vec::new();
        for p in self.method(method)["params"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            properties.insert(name.to_string(), p["schema"].clone());
            if p["required"] == json!(true) {
                required.push(name);
            }
        }
        json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
    }

    /// The codes a method declares it may answer.
    pub(super) fn method_codes(&self, method: &str) -> BTreeSet<i64> {
        self.method(method)["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let name = e["$ref"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("#/components/errors/")
                    .unwrap();
                self.doc["components"]["errors"][name]["code"]
                    .as_i64()
                    .unwrap()
            })
            .collect()
    }

    /// Calls `method` with valid `params` (the description must accept them) and checks the
    /// result against its schema.
    pub(super) fn ok(&mut self, rpc: &mut Rpc, method: &str, params: Value) -> Value {
        self.check(
            &format!("{method} params"),
            &self.params_schema(method),
            &params,
        );
        let reply = rpc.call(method, params);
        assert!(reply.get("error").is_none(), "{method} failed: {reply}");
        let result = reply["result"].clone();
        self.check(
            &format!("{method} result"),
            &self.method(method)["result"]["schema"],
            &result,
        );
        self.called.insert(method.to_string());
        result
    }

    /// Checks an error reply line: the whole line, then its code and field.
    pub(super) fn error_line(&mut self, reply: &Value, code: i64, field: Option<&str>) -> Value {
        self.check(
            "error reply",
            &json!({"$ref": "#/components/schemas/ErrorResponse"}),
            reply,
        );
        let e = reply["error"].clone();
        assert_eq!(e["code"], json!(code), "{reply}");
        assert_eq!(e["data"]["field"].as_str(), field, "{reply}");
        self.codes.insert(code);
        e
    }

    /// Calls `method` and expects the error `code` naming `field`, an error its method
    /// declares; returns the error object.
    pub(super) fn refused(
        &mut self,
        rpc: &mut Rpc,
        method: &str,
        params: Value,
        code: i64,
        field: Option<&str>,
    ) -> Value {
        let reply = rpc.call(method, params.clone());
        let e = self.error_line(&reply, code, field);
        assert!(
            self.method_codes(method).contains(&code),
            "{method} answered {code}, which its description does not list"
        );
        // A parameter fsed refuses as invalid, the description refuses too.
        if code == -32602 {
            assert!(
                self.conforms(&self.params_schema(method), &params).is_err(),
                "{method}: the description accepts {params}, which fsed refuses: {e}"
            );
        }
        e
    }
}
