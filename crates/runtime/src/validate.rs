//! Checks a plugin before it ever runs, and says precisely what is wrong.
//!
//! A plugin must be a WebAssembly *component* (not a core module), must export
//! this host's `run`, and may import only what the host provides and grants:
//! the `taskhost:plugin` interfaces of the version we speak, and the sandboxed
//! part of WASI p2 (clocks, random, stdio, I/O streams), and outbound HTTP
//! (`wasi:http/outgoing-handler`, which only reaches what the run is granted).
//!
//! `wasi:filesystem` and `wasi:sockets` may be imported but reach nothing:
//! interpreters built into components (CPython by componentize-py, and
//! language runtimes generally) import them whether or not the task uses
//! them, so refusing the import would refuse every such plugin. A run has no
//! preopened directory (no path resolves, so nothing can be read or written)
//! and every socket operation fails (TCP and UDP with `access-denied`, name
//! lookups with `permanent-resolver-failure`; no address passes the address
//! check either); see
//! `RunState::new`. What is refused at upload is what the host does not
//! provide or would never grant: serving HTTP, other packages, other
//! versions of the contract.

use taskhost_model::error::ErrorCode;
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// The contract version this host implements (see `wit/task.wit`).
pub const WORLD: &str = "taskhost:plugin/task@0.1.0";
const PACKAGE: &str = "taskhost:plugin";
const PACKAGE_VERSION: &str = "0.1.0";

/// WASI p2 interfaces a plugin may import, by `namespace:package/interface`.
const GRANTED_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    // Outbound HTTP: linked for every plugin, usable only within the run's
    // grant (see `runtime::http`).
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    // Linked, but with no preopened directory: no path resolves.
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    // Linked, but every operation fails (`access-denied`; name lookups
    // `permanent-resolver-failure`).
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// Why a plugin was refused. The message names the problem and, where it can,
/// what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPlugin {
    #[error("not a WebAssembly binary (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build the plugin for the \
         `wasm32-wasip2` target (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("not a valid WebAssembly component: {0}")]
    Malformed(String),
    #[error(
        "the component does not export `run` of world `{WORLD}`{exports}; \
         build it with the taskhost SDK (`taskhost_sdk::export_task!`)",
        exports = describe_list(" (it exports ", .0, ")")
    )]
    MissingRun(Vec<String>),
    #[error("the component targets `{0}`, but this host implements `{WORLD}`")]
    WrongVersion(String),
    #[error("the component imports `{0}`: {1}")]
    DeniedImport(String, &'static str),
    #[error("the component imports `{0}`, which this host does not provide")]
    UnknownImport(String),
    #[error("the component's `run` or imports do not match `{WORLD}`: {0}")]
    Mismatch(String),
    #[error("the component would cost too much to compile: {0}; split the work or make it smaller")]
    TooCostly(String),
}

impl InvalidPlugin {
    /// A stable machine-readable code for APIs.
    pub fn code(&self) -> ErrorCode {
        match self {
            InvalidPlugin::NotWasm => ErrorCode::NotWasm,
            InvalidPlugin::CoreModule => ErrorCode::CoreModule,
            InvalidPlugin::Malformed(_) => ErrorCode::MalformedComponent,
            InvalidPlugin::MissingRun(_) => ErrorCode::WrongWorld,
            InvalidPlugin::WrongVersion(_) => ErrorCode::WrongWorldVersion,
            InvalidPlugin::DeniedImport(..) => ErrorCode::ImportDenied,
            InvalidPlugin::UnknownImport(_) => ErrorCode::ImportUnknown,
            InvalidPlugin::Mismatch(_) => ErrorCode::WrongWorld,
            InvalidPlugin::TooCostly(_) => ErrorCode::TooCostly,
        }
    }
}

fn describe_list(prefix: &str, items: &[String], suffix: &str) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("{prefix}{}{suffix}", items.join(", "))
    }
}

/// Cheap checks on the raw bytes, before spending time compiling.
pub(crate) fn check_header(wasm: &[u8]) -> Result<(), InvalidPlugin> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(InvalidPlugin::NotWasm);
    }
    // Bytes 4..8: version 1, layer 0 is a core module; layer 1 a component.
    match wasm[4..8] {
        [1, 0, 0, 0] => Err(InvalidPlugin::CoreModule),
        [_, _, 1, 0] => Ok(()),
        _ => Err(InvalidPlugin::Malformed(
            "unknown binary version or layer".into(),
        )),
    }
}

/// Checks a compiled component's exports and imports against the contract.
pub(crate) fn check_component(engine: &Engine, component: &Component) -> Result<(), InvalidPlugin> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        check_import(name)?;
    }
    let exports: Vec<(String, ComponentItem)> = ty
        .exports(engine)
        .map(|(name, item)| (name.to_owned(), item.ty))
        .collect();
    let has_run = exports
        .iter()
        .any(|(name, item)| name == "run" && matches!(item, ComponentItem::ComponentFunc(_)));
    if !has_run {
        return Err(InvalidPlugin::MissingRun(
            exports.into_iter().map(|(n, _)| n).collect(),
        ));
    }
    Ok(())
}

/// Checks one import's name (`namespace:package/interface@version`).
pub(crate) fn check_import(name: &str) -> Result<(), InvalidPlugin> {
    let (interface, version) = name.split_once('@').unwrap_or((name, ""));
    if let Some(rest) = interface.strip_prefix(PACKAGE) {
        if !matches!(rest, "/types" | "/host") {
            return Err(InvalidPlugin::UnknownImport(name.to_owned()));
        }
        if version != PACKAGE_VERSION {
            return Err(InvalidPlugin::WrongVersion(format!("{PACKAGE}@{version}")));
        }
        return Ok(());
    }
    if GRANTED_WASI.contains(&interface) {
        return Ok(());
    }
    let denied = if interface.starts_with("wasi:http/") {
        Some("a plugin may make outbound requests (wasi:http/outgoing-handler), not serve them")
    } else {
        None
    };
    Err(match denied {
        Some(reason) => InvalidPlugin::DeniedImport(name.to_owned(), reason),
        None => InvalidPlugin::UnknownImport(name.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(check_header(b"hello world"), Err(InvalidPlugin::NotWasm));
        assert_eq!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(InvalidPlugin::CoreModule)
        );
        assert_eq!(check_header(b"\0asm\x0d\0\x01\0"), Ok(()));
        assert!(matches!(
            check_header(b"\0asm\x02\0\x02\0"),
            Err(InvalidPlugin::Malformed(_))
        ));
    }

    #[test]
    fn imports() {
        assert!(check_import("wasi:io/streams@0.2.6").is_ok());
        assert!(check_import("taskhost:plugin/host@0.1.0").is_ok());
        assert!(matches!(
            check_import("taskhost:plugin/host@0.2.0"),
            Err(InvalidPlugin::WrongVersion(_))
        ));
        // Linked but reaching nothing (see the module docs).
        assert!(check_import("wasi:filesystem/preopens@0.2.9").is_ok());
        assert!(check_import("wasi:sockets/tcp@0.2.0").is_ok());
        assert!(check_import("wasi:http/outgoing-handler@0.2.3").is_ok());
        assert!(matches!(
            check_import("wasi:http/incoming-handler@0.2.3"),
            Err(InvalidPlugin::DeniedImport(..))
        ));
        assert!(matches!(
            check_import("acme:evil/thing"),
            Err(InvalidPlugin::UnknownImport(_))
        ));
    }
}
