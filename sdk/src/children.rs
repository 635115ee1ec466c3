//! Child runs of a workflow: [`Context::spawn`] makes them, [`Context::join`]
//! waits for them to end.

use crate::bindings::taskhost::plugin::{host, types};
use crate::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One child run to spawn: a plugin, its input, and run options.
#[derive(Debug, Clone)]
pub struct Child {
    plugin: String,
    input: Value,
    options: Map<String, Value>,
}

impl Child {
    /// A run of `plugin` (an id, `name@version`, `name@alias`, or a name for
    /// its latest version) with `input`.
    pub fn new(plugin: &str, input: impl Serialize) -> Child {
        Child {
            plugin: plugin.to_owned(),
            input: serde_json::to_value(input).unwrap_or(Value::Null),
            options: Map::new(),
        }
    }

    /// Sets a run option, as `POST /v1/executions` takes it: `priority`,
    /// `retry`, `limits`, `config`, `secrets`, `network`… A child may be
    /// granted only secrets and hosts this run holds.
    pub fn option(mut self, key: &str, value: impl Serialize) -> Child {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.options.insert(key.to_owned(), value);
        self
    }

    /// Not cancelled when this run's execution is.
    pub fn detach(self) -> Child {
        self.option("detach", true)
    }
}

/// How a joined child ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildOutcome {
    pub id: String,
    /// `succeeded`, `failed`, `dead`, `cancelled`, or `missing`.
    pub status: String,
    /// Its output, when it succeeded.
    #[serde(default)]
    pub output: Value,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
}

impl ChildOutcome {
    pub fn succeeded(&self) -> bool {
        self.status == "succeeded"
    }
}

impl Context {
    /// A step named `name` that makes `children` — executions linked to
    /// this one, queued at once — and returns their ids. A replay returns
    /// the recorded ids and makes nothing again. Refused (a retryable
    /// error) for an unknown plugin, a bad option, past 1,000 children
    /// per execution or 4 levels deep, or past the tenant's queue quota.
    pub fn spawn(&self, name: &str, children: &[Child]) -> Result<Vec<String>> {
        let runs: Vec<types::ChildRun> = children
            .iter()
            .map(|c| types::ChildRun {
                plugin: c.plugin.clone(),
                input: serde_json::to_vec(&c.input).unwrap_or_default(),
                options: Value::Object(c.options.clone()).to_string(),
            })
            .collect();
        host::spawn(name, &runs).map_err(Error::retryable)
    }

    /// A step named `name` that waits until `children` (ids this execution
    /// spawned) have all ended — the run ends meanwhile, holding no worker,
    /// and runs again, replaying its steps, as they end — and returns how
    /// each ended, in order.
    pub fn join(&self, name: &str, children: &[String]) -> Result<Vec<ChildOutcome>> {
        let bytes = host::join(name, children);
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::fatal(format!("join {name:?}'s outcomes are not JSON: {e}")))
    }
}
