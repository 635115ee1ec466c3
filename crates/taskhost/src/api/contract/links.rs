//! The document's response links: what a client (or a fuzzer's stateful
//! phase) can do next with what an operation returned — the execution a
//! submission made, the schedule a create made, the plugin an upload made.
//! One table, in the operation ids the document ends with. Links set path
//! parameters only: some generators refuse a link's literal request body.

use serde_json::{Value, json};

const ID: &str = "$response.body#/id";
const FIRST_ID: &str = "$response.body#/items/0/id";

/// (operation path, method, status, link name, target operation id,
/// parameters).
type Link = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Value,
);

fn table() -> Vec<Link> {
    let id = json!({ "path.id": ID });
    let mut links: Vec<Link> = Vec::new();
    let execution = [
        ("Get", "executions_get"),
        ("Cancel", "executions_cancel"),
        ("Rerun", "executions_rerun"),
        ("Deliveries", "webhooks_deliveries"),
    ];
    for (path, method, status) in [
        ("/v1/executions", "post", "200"),
        ("/v1/executions", "post", "202"),
        ("/v1/executions/{id}/rerun", "post", "202"),
        ("/v1/schedules/{id}/trigger", "post", "202"),
    ] {
        for (name, op) in execution {
            links.push((path, method, status, name, op, id.clone()));
        }
    }
    let first = json!({ "path.id": "$response.body#/ids/0" });
    for (name, op) in [("Get", "executions_get"), ("Cancel", "executions_cancel")] {
        links.push((
            "/v1/executions/batch",
            "post",
            "202",
            name,
            op,
            first.clone(),
        ));
    }
    for (name, op) in [
        ("Get", "schedules_get"),
        ("Patch", "schedules_patch"),
        ("Delete", "schedules_delete"),
        ("Pause", "schedules_pause"),
        ("Resume", "schedules_resume"),
        ("Trigger", "schedules_trigger_now"),
        ("Fires", "schedules_fires"),
        ("Backfill", "schedules_backfill"),
    ] {
        links.push(("/v1/schedules", "post", "201", name, op, id.clone()));
    }
    plugin_links(&mut links, "post", "201", "");
    plugin_links(&mut links, "get", "200", "/items/0");
    let alias = json!({ "path.id": "$request.path.id", "path.alias": "$request.path.alias" });
    let aliases = "/v1/plugins/{id}/aliases/{alias}";
    links.push((
        aliases,
        "post",
        "200",
        "Delete",
        "plugins_delete_alias",
        alias,
    ));
    let name = json!({ "path.id": "$request.path.id" });
    links.push((aliases, "post", "200", "List", "plugins_list_aliases", name));
    let secret = json!({ "path.name": "$response.body#/name" });
    links.push((
        "/v1/secrets/{name}",
        "put",
        "200",
        "Delete",
        "secrets_delete",
        secret,
    ));
    links
}

/// What can be done with a plugin: from an upload's answer, or the first
/// of a list (`at`: where the record is in the body).
fn plugin_links(links: &mut Vec<Link>, method: &'static str, status: &'static str, at: &str) {
    let field = |f: &str| format!("$response.body#{at}/{f}");
    let id = if at.is_empty() { ID } else { FIRST_ID };
    for (name, op) in [
        ("Get", "plugins_get"),
        ("Download", "plugins_download"),
        ("Delete", "plugins_delete"),
    ] {
        let params = json!({ "path.id": id });
        links.push(("/v1/plugins", method, status, name, op, params));
    }
    let by_name = json!({ "path.id": field("name") });
    links.push((
        "/v1/plugins",
        method,
        status,
        "ListAliases",
        "plugins_list_aliases",
        by_name,
    ));
}

pub(super) fn apply(doc: &mut Value) {
    for (path, method, status, name, op, params) in table() {
        let response = &mut doc["paths"][path][method]["responses"][status];
        if response.is_null() {
            continue; // a worker node's document has no such operation
        }
        let mut link = json!({ "operationId": op });
        if params.as_object().is_some_and(|p| !p.is_empty()) {
            link["parameters"] = params;
        }
        response["links"][name] = link;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every link names an operation of the document, and every parameter
    /// it sets is one of that operation's.
    #[test]
    fn links_point_at_real_operations_and_parameters() {
        let doc = crate::api::openapi();
        let mut operations = std::collections::HashMap::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (_, op) in item.as_object().expect("item") {
                if let Some(id) = op["operationId"].as_str() {
                    operations.insert(id.to_owned(), (path.clone(), op.clone()));
                }
            }
        }
        for (path, method, status, name, op, params) in table() {
            assert!(
                !doc["paths"][path][method]["responses"][status].is_null(),
                "{path} {method} {status}"
            );
            let (_, target) = operations
                .get(op)
                .unwrap_or_else(|| panic!("{name}: no {op}"));
            for key in params.as_object().expect("params").keys() {
                let (place, param) = key.split_once('.').expect("place.name");
                let declared = target["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == param && p["in"] == place));
                assert!(declared, "{name}: {op} has no {key}");
            }
        }
    }
}
