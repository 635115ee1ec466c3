//! Admission: cheap checks of what makes a plugin expensive to compile, made
//! before the compiler sees it.
//!
//! Compiling is the one cost an upload causes that a tenant's run limits do
//! not cover, and Cranelift's time and memory grow faster than linearly with
//! a function's size. So a plugin is parsed first (one linear pass, no
//! compilation) and refused with `too_costly` when a function body, the
//! number of functions, the total code, or the number of nested modules is
//! over the [`CompileBudget`]. The same pass checks the component's imports
//! (the names; their types are checked after compiling), so that a plugin
//! refused for what it imports costs no compile time either: an interpreter
//! component takes seconds to compile. So does a component that exports no
//! `run` (its type is checked after compiling). Compilations that pass run at most
//! [`CompileBudget::concurrent`] at a time per node (see `Runtime`).

use super::validate::{InvalidPlugin, check_import};
use wasmparser::{ComponentTypeRef, Parser, Payload, TypeBounds};

/// What one plugin may ask of the compiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileBudget {
    /// Bytes of one function body.
    pub function_bytes: usize,
    /// Functions defined, over all core modules.
    pub functions: u64,
    /// Bytes of code, over all core modules.
    pub code_bytes: usize,
    /// Core modules and nested components.
    pub modules: u64,
    /// Compilations at once on a node (default: one per core).
    pub concurrent: usize,
}

impl Default for CompileBudget {
    fn default() -> Self {
        CompileBudget {
            // CPython's largest function, compiled to wasm, is well under this.
            function_bytes: 1 << 20,
            functions: 200_000,
            code_bytes: 64 << 20,
            modules: 256,
            concurrent: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Checks `wasm` against `budget` without compiling it. Bytes that do not
/// parse are left to the compiler, which says what is wrong with them; an
/// import entry that does not parse is refused as malformed, since a name
/// that cannot be read cannot be checked.
pub fn admit(wasm: &[u8], budget: &CompileBudget) -> Result<(), InvalidPlugin> {
    let (mut functions, mut code, mut modules) = (0u64, 0usize, 0u64);
    // Nesting: 0 is the plugin itself; its nested modules and components
    // come inline, each closed by an `End`.
    let mut depth = 0u32;
    // The plugin's own exports (a core module is refused by the header
    // check, before this).
    let mut exports: Vec<String> = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else {
            return Ok(());
        };
        match payload {
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| InvalidPlugin::Malformed(e.to_string()))?;
                    // Types a world `use`s (`invocation`) are imported by
                    // name too, as aliases of types defined in the component;
                    // they grant nothing. (Imported resources are checked.)
                    if !matches!(import.ty, ComponentTypeRef::Type(TypeBounds::Eq(_))) {
                        check_import(&import.name.full_name())?;
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| InvalidPlugin::Malformed(e.to_string()))?;
                    exports.push(export.name.name.to_owned());
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                depth += 1;
                modules += 1;
                if modules > budget.modules {
                    return Err(too_costly(format!(
                        "more than {} core modules and components",
                        budget.modules
                    )));
                }
            }
            Payload::FunctionSection(reader) => {
                functions += u64::from(reader.count());
                if functions > budget.functions {
                    return Err(too_costly(format!(
                        "more than {} functions",
                        budget.functions
                    )));
                }
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.as_bytes().len();
                if size > budget.function_bytes {
                    return Err(too_costly(format!(
                        "a function body of {size} bytes (the most is {})",
                        budget.function_bytes
                    )));
                }
                code += size;
                if code > budget.code_bytes {
                    return Err(too_costly(format!(
                        "more than {} bytes of code",
                        budget.code_bytes
                    )));
                }
            }
            _ => {}
        }
    }
    if !exports.iter().any(|n| n == "run") {
        return Err(InvalidPlugin::MissingRun(exports));
    }
    Ok(())
}

fn too_costly(what: String) -> InvalidPlugin {
    InvalidPlugin::TooCostly(what)
}

/// Compilations in progress on a node, at most a fixed number at once;
/// more wait (on their blocking threads) for a slot.
#[derive(Debug)]
pub(crate) struct CompileSlots {
    limit: usize,
    /// (in progress, most ever at once)
    state: std::sync::Mutex<(usize, usize)>,
    freed: std::sync::Condvar,
}

impl CompileSlots {
    pub(crate) fn new(limit: usize) -> CompileSlots {
        CompileSlots {
            limit: limit.max(1),
            state: std::sync::Mutex::new((0, 0)),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits for a slot; it is given back when the guard drops.
    pub(crate) fn acquire(&self) -> CompileSlot<'_> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.0 >= self.limit {
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.0 += 1;
        state.1 = state.1.max(state.0);
        CompileSlot { slots: self }
    }

    /// Compilations now, and the most there ever were at once.
    pub(crate) fn usage(&self) -> (usize, usize) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A compile slot, held while compiling.
pub(crate) struct CompileSlot<'a> {
    slots: &'a CompileSlots,
}

impl Drop for CompileSlot<'_> {
    fn drop(&mut self) {
        let mut state = self.slots.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = state.0.saturating_sub(1);
        self.slots.freed.notify_one();
    }
}
