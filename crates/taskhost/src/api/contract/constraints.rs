//! Every constraint the server enforces, declared in the document from the
//! constants the checks themselves use: name patterns and lengths, enums,
//! numeric ranges (the node's own caps), page sizes, and the formats of
//! durations and cron expressions. Where the derive cannot say it (a
//! generic page's items, a flattened field's range, a tagged enum's closed
//! variants), it is said here, after generation.

use super::Facts;
use serde_json::{Value, json};
use taskhost_model::policy::{MAX_ATTEMPTS, MAX_NAME_CHARS, MAX_NOTIFY_TARGETS, MAX_URL_BYTES};
use taskhost_model::secrets::{MAX_SECRETS_PER_RUN, NAME_PATTERN as SECRET_NAME};

/// The label of a plugin name, version or alias (see `plugins::check_label`).
const LABEL: &str = crate::api::plugins::LABEL_PATTERN;

/// An IANA time zone name (`Europe/London`); a format, not an enum of the
/// ~600 names, which client generators turn into clashing identifiers.
const TIMEZONE: &str = "iana-timezone";

/// RFC 3339, as every time is read.
const RFC3339: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// A duration (`5s`, `250ms`, `1h 30m`): a custom format, since its grammar
/// and ranges are not JSON Schema's; `scripts/schemathesis_hooks.py` tells
/// the fuzzer how to write one.
fn duration(format: &str) -> Value {
    json!({ "type": "string", "format": format })
}

fn nullable(schema: Value) -> Value {
    json!({ "oneOf": [{ "type": "null" }, schema] })
}

fn time() -> Value {
    json!({ "type": "string", "format": "date-time", "pattern": RFC3339 })
}

fn props<'a>(doc: &'a mut Value, schema: &str) -> &'a mut Value {
    &mut doc["components"]["schemas"][schema]["properties"]
}

/// The part of a flattened schema (`allOf: [$ref, {own fields}]`) that
/// holds its own fields.
fn own_props<'a>(doc: &'a mut Value, schema: &str) -> &'a mut Value {
    let schema = &mut doc["components"]["schemas"][schema];
    let flattened = schema["allOf"]
        .as_array()
        .and_then(|parts| parts.iter().position(|p| p.get("properties").is_some()));
    match flattened {
        Some(i) => &mut schema["allOf"][i]["properties"],
        None => &mut schema["properties"],
    }
}

/// Sets `fields` on the schema of query or path parameter `name` of
/// `method path`.
fn param(doc: &mut Value, path: &str, method: &str, name: &str, fields: Value) {
    let Some(params) = doc["paths"][path][method]["parameters"].as_array_mut() else {
        return;
    };
    for p in params.iter_mut().filter(|p| p["name"] == name) {
        if let (Some(schema), Some(fields)) = (p["schema"].as_object_mut(), fields.as_object()) {
            schema.extend(fields.clone());
        }
    }
}

pub(super) fn apply(doc: &mut Value, facts: &Facts) {
    parameters(doc);
    run_policy(doc, facts);
    schedules(doc);
    records(doc);
    api_keys(doc);
    for body in ["NewExecution", "BatchRun", "NewSchedule", "SchedulePatch"] {
        close(doc, body);
    }
}

/// A request body the server reads with every other field refused: its
/// flattened parts (`allOf`) merged into one object with no other fields
/// (JSON Schema's `additionalProperties` sees only an object's own).
fn close(doc: &mut Value, name: &str) {
    let schemas = &doc["components"]["schemas"];
    let mut merged = json!({ "type": "object", "properties": {}, "required": [] });
    let parts = schemas[name]["allOf"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for part in parts {
        let part = match part["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
            Some(referenced) => schemas[referenced].clone(),
            None => part,
        };
        if let (Some(to), Some(from)) = (
            merged["properties"].as_object_mut(),
            part["properties"].as_object(),
        ) {
            to.extend(from.clone());
        }
        if let (Some(to), Some(from)) = (
            merged["required"].as_array_mut(),
            part["required"].as_array(),
        ) {
            to.extend(from.iter().cloned());
        }
    }
    if let Some(description) = schemas[name].get("description") {
        merged["description"] = description.clone();
    }
    merged["additionalProperties"] = json!(false);
    doc["components"]["schemas"][name] = merged;
}

fn parameters(doc: &mut Value) {
    // A pattern, not an enum: clients generated from the document keep a
    // plain string here, as they always had.
    let statuses: Vec<&str> = taskhost_model::ExecutionStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let status = format!("^({})$", statuses.join("|"));
    param(
        doc,
        "/v1/executions",
        "get",
        "status",
        json!({ "pattern": status }),
    );
    let page = json!({ "minimum": 1, "maximum": taskhost_store::MAX_PAGE });
    for path in [
        "/v1/plugins",
        "/v1/schedules",
        "/v1/executions",
        "/v1/schedules/{id}/fires",
    ] {
        param(doc, path, "get", "limit", page.clone());
    }
    param(
        doc,
        "/v1/schedules/{id}/fires",
        "get",
        "cursor",
        json!({ "pattern": "^-?[0-9]{1,18}$" }),
    );
    let preview = "/v1/cron/preview";
    let max = crate::api::cron::MAX_PREVIEW;
    param(
        doc,
        preview,
        "get",
        "count",
        json!({ "minimum": 1, "maximum": max }),
    );
    param(
        doc,
        preview,
        "get",
        "timezone",
        json!({ "format": TIMEZONE }),
    );
    param(doc, preview, "get", "expr", json!({ "format": "cron" }));
    for name in ["name", "version"] {
        param(
            doc,
            "/v1/plugins",
            "post",
            name,
            json!({ "pattern": LABEL }),
        );
    }
    for (path, methods) in [
        ("/v1/plugins/{id}/aliases", &["get"][..]),
        ("/v1/plugins/{id}/aliases/{alias}", &["post", "delete"][..]),
    ] {
        for method in methods {
            for name in ["id", "alias"] {
                param(doc, path, method, name, json!({ "pattern": LABEL }));
            }
        }
    }
    for method in ["put", "delete"] {
        param(
            doc,
            "/v1/secrets/{name}",
            method,
            "name",
            json!({ "pattern": SECRET_NAME }),
        );
    }
}

/// What a run may ask for, within the node's caps and network policy.
fn run_policy(doc: &mut Value, facts: &Facts) {
    let caps = &facts.caps;
    let limits = props(doc, "Limits");
    for (field, max) in [
        ("fuel", caps.fuel),
        ("memory_bytes", caps.memory_bytes),
        ("output_bytes", caps.output_bytes),
        ("log_bytes", caps.log_bytes),
        ("http_requests", caps.http_requests.into()),
        ("http_sent_bytes", caps.http_sent_bytes),
        ("http_received_bytes", caps.http_received_bytes),
    ] {
        limits[field]["maximum"] = json!(max);
    }
    for field in ["fuel", "memory_bytes"] {
        limits[field]["minimum"] = json!(1);
    }
    for field in ["timeout", "http_timeout"] {
        limits[field] = duration("humantime");
    }
    let retry = props(doc, "RetryPolicy");
    retry["max_attempts"]["minimum"] = json!(1);
    retry["max_attempts"]["maximum"] = json!(MAX_ATTEMPTS);
    retry["initial_backoff"] = duration("humantime-short");
    retry["max_backoff"] = duration("humantime");
    props(doc, "CatchUp")["window"] = duration("humantime");
    props(doc, "RateLimit")["per"] = duration("humantime");
    props(doc, "Debounce")["period"] = duration("humantime");
    let policy = props(doc, "RunPolicy");
    policy["retention"] = nullable(duration("humantime-retention"));
    policy["secrets"]["items"] = json!({ "type": "string", "pattern": SECRET_NAME });
    policy["secrets"]["maxItems"] = json!(MAX_SECRETS_PER_RUN);
    policy["notify"]["maxItems"] = json!(MAX_NOTIFY_TARGETS);
    if !facts.network_open {
        // This node's policy lets no run reach the world.
        policy["notify"]["maxItems"] = json!(0);
        props(doc, "NetworkGrant")["allow"]["maxItems"] = json!(0);
    }
    let target = props(doc, "NotifyTarget");
    target["url"]["maxLength"] = json!(MAX_URL_BYTES);
    target["url"]["pattern"] = json!("^https?://");
    target["on"]["items"] = json!({ "type": "string", "enum": taskhost_model::EVENTS });
    own_props(doc, "NewExecution")["wait"] = nullable(duration("humantime"));
}

fn schedules(doc: &mut Value) {
    let name = json!({ "minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": "\\S" });
    for schema in ["NewSchedule", "SchedulePatch"] {
        let own = own_props(doc, schema);
        if let (Some(field), Some(name)) = (own["name"].as_object_mut(), name.as_object()) {
            field.extend(name.clone());
        }
        own["jitter"] = nullable(duration("humantime"));
    }
    let new = own_props(doc, "NewSchedule");
    new["plugin"]["pattern"] = json!(format!(
        "{}@{}",
        LABEL.trim_end_matches('$'),
        LABEL.trim_start_matches('^')
    ));
    for field in ["starts_at", "ends_at"] {
        new[field] = nullable(time());
    }
    if let Some(variants) = doc["components"]["schemas"]["Trigger"]["oneOf"].as_array_mut() {
        for variant in variants {
            variant["additionalProperties"] = json!(false);
            let fields = &mut variant["properties"];
            if fields.get("every").is_some() {
                fields["every"] = duration("humantime-interval");
            }
            if fields.get("start_at").is_some() {
                fields["start_at"] = nullable(time());
            }
            if fields.get("at").is_some() {
                fields["at"] = time();
            }
            if fields.get("expr").is_some() {
                fields["expr"]["format"] = json!("cron");
                fields["timezone"]["format"] = json!(TIMEZONE);
            }
        }
    }
    props(doc, "BackfillRequest")["overlap"] =
        json!({ "type": ["string", "null"], "enum": ["allow", null] });
    props(doc, "AliasTarget")["version"]["pattern"] = json!(LABEL);
}

/// Lists' items by reference (the derive inlines a generic's argument), so
/// a client and a fuzzer connect a list to its records.
fn records(doc: &mut Value) {
    for (page, item) in [
        ("Page_PluginRecord", "PluginRecord"),
        ("Page_Schedule", "Schedule"),
        ("Page_Execution", "Execution"),
        ("Page_FireRecord", "FireRecord"),
    ] {
        props(doc, page)["items"]["items"] =
            json!({ "$ref": format!("#/components/schemas/{item}") });
    }
}

/// An API key's scopes are scope names, its lifetime a duration.
fn api_keys(doc: &mut Value) {
    let names: Vec<&str> = crate::api::auth::Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let new = props(doc, "NewApiKey");
    new["scopes"]["items"] = json!({ "type": "string", "enum": names });
    new["expires_in"] = nullable(duration("humantime"));
}
