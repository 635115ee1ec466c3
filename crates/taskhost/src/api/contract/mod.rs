//! Makes `/openapi.json` a contract a client can be generated from: operation
//! ids are unique, every path parameter is declared, and every error status
//! the server can answer is documented, with the error envelope as its body.
//!
//! The handlers' own annotations say what is particular to them (success
//! bodies, their query parameters, a 409 or a 413 with words); the errors
//! every route shares are added here once, rather than repeated on each:
//! a malformed request, a missing or bad token, a missing scope, an unknown
//! id, a refused value, a rate limit, a store that is away.

mod constraints;
mod links;

use taskhost_model::Limits;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{OpenApi, Ref, RefOr, Required};

/// Statuses any API route may answer with the error envelope.
const API_ERRORS: [(&str, &str); 10] = [
    ("400", "The request is malformed (bad JSON, query or path)."),
    ("401", "No token, or a token that is not valid here."),
    ("403", "The token lacks the scope this needs."),
    (
        "404",
        "No such record in the token's tenant, or no such route.",
    ),
    ("413", "The body is over the size limit."),
    ("415", "The body's content type is not the one expected."),
    (
        "422",
        "Well-formed, but a value is refused (the message says which).",
    ),
    (
        "429",
        "Over a rate or queue quota; `Retry-After` says when to come back.",
    ),
    (
        "500",
        "The store failed; quote the `X-Request-Id` header to the operator.",
    ),
    (
        "503",
        "The store is unavailable, or the request took too long; try again.",
    ),
];

/// Statuses the unauthenticated operations routes may answer.
const OPS_ERRORS: [(&str, &str); 1] = [("503", "Not ready: the store does not answer.")];

pub(super) struct Contract;

/// What the document says of the node that serves it: the most a run may
/// ask for, and whether its network policy lets runs reach anything.
pub(super) struct Facts {
    pub caps: Limits,
    pub network_open: bool,
}

/// The document as served: the derive's, made a contract (above), with
/// every constraint ([`constraints`]) and the response links ([`links`]).
pub(super) fn document(mut openapi: OpenApi, facts: &Facts) -> serde_json::Value {
    utoipa::Modify::modify(&Contract, &mut openapi);
    let mut doc = serde_json::to_value(&openapi).unwrap_or_default();
    constraints::apply(&mut doc, facts);
    links::apply(&mut doc);
    doc
}

impl utoipa::Modify for Contract {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let names: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            let errors: &[(&str, &str)] = if path.starts_with("/v1/") {
                &API_ERRORS
            } else {
                &OPS_ERRORS
            };
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                name_uniquely(operation);
                declare_path_parameters(operation, &names);
                document_errors(operation, errors);
            }
        }
    }
}

/// Operation ids are the handlers' names (`list`, `get`…), which repeat
/// across resources: prefixed with the operation's tag they are unique, as
/// client generators need (`plugins_list`, `schedules_get`…).
fn name_uniquely(operation: &mut Operation) {
    let tag = operation.tags.as_ref().and_then(|t| t.first()).cloned();
    if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut())
        && !id.starts_with(&format!("{tag}_"))
    {
        *id = format!("{tag}_{id}");
    }
}

fn declare_path_parameters(operation: &mut Operation, names: &[&str]) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    for name in names {
        let declared = parameters
            .iter()
            .any(|p| p.name == *name && p.parameter_in == ParameterIn::Path);
        if !declared {
            parameters.push(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some(format!("The record's `{name}`.")))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            );
        }
    }
}

fn document_errors(operation: &mut Operation, errors: &[(&str, &str)]) {
    for (status, why) in errors {
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(*why)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                )
            });
    }
}
