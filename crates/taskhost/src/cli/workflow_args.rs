//! `taskhost serve --workflow-*`, `[workflow]` in the config file: the
//! bounds this node holds durable workflows to
//! ([`taskhost_model::workflow::WorkflowBounds`]). Each defaults to the
//! most it may be; a node may set it tighter, never looser. Give every
//! node of a cluster the same values.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use taskhost_model::workflow::WorkflowBounds;

/// The node's workflow bounds, as flags, environment or `[workflow]`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct WorkflowArgs {
    /// Most steps one workflow execution may record [default and most: 1000].
    #[arg(
        long = "workflow-max-steps",
        env = "TASKHOST_WORKFLOW_MAX_STEPS",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    /// The largest result of one step, in bytes [default and most: 262144].
    #[arg(
        long = "workflow-max-step-bytes",
        env = "TASKHOST_WORKFLOW_MAX_STEP_BYTES",
        value_name = "BYTES"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_step_bytes: Option<usize>,
    /// The most bytes of step results one execution keeps [default and
    /// most: 1048576].
    #[arg(
        long = "workflow-max-steps-bytes",
        env = "TASKHOST_WORKFLOW_MAX_STEPS_BYTES",
        value_name = "BYTES"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps_bytes: Option<usize>,
    /// Most children one execution may spawn [default and most: 1000].
    #[arg(
        long = "workflow-max-children",
        env = "TASKHOST_WORKFLOW_MAX_CHILDREN",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_children: Option<usize>,
    /// How deep children may nest [default and most: 4].
    #[arg(
        long = "workflow-max-depth",
        env = "TASKHOST_WORKFLOW_MAX_DEPTH",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u32>,
    /// The longest a workflow lives from its creation [default and most: 30d].
    #[arg(
        long = "workflow-max-lifetime",
        env = "TASKHOST_WORKFLOW_MAX_LIFETIME",
        value_name = "DURATION",
        value_parser = taskhost_model::time::parse_duration
    )]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "taskhost_model::time::option_duration"
    )]
    pub max_lifetime: Option<Duration>,
    /// A workflow's fuel over all its runs, as a multiple of its per-run
    /// fuel limit [default and most: 100].
    #[arg(
        long = "workflow-fuel-runs",
        env = "TASKHOST_WORKFLOW_FUEL_RUNS",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_runs: Option<u64>,
}

impl WorkflowArgs {
    /// The bounds these settings make, defaults filled in; an error names
    /// a setting past its most or zero.
    pub fn bounds(&self) -> anyhow::Result<WorkflowBounds> {
        let most = WorkflowBounds::default();
        let bounds = WorkflowBounds {
            max_steps: self.max_steps.unwrap_or(most.max_steps),
            max_step_result_bytes: self.max_step_bytes.unwrap_or(most.max_step_result_bytes),
            max_steps_bytes: self.max_steps_bytes.unwrap_or(most.max_steps_bytes),
            max_children: self.max_children.unwrap_or(most.max_children),
            max_depth: self.max_depth.unwrap_or(most.max_depth),
            max_lifetime: self.max_lifetime.unwrap_or(most.max_lifetime),
            fuel_runs: self.fuel_runs.unwrap_or(most.fuel_runs),
        };
        bounds.check()?;
        Ok(bounds)
    }

    /// Every setting given, as `bounds` holds it (for `--print-config`).
    pub fn of(bounds: &WorkflowBounds) -> WorkflowArgs {
        WorkflowArgs {
            max_steps: Some(bounds.max_steps),
            max_step_bytes: Some(bounds.max_step_result_bytes),
            max_steps_bytes: Some(bounds.max_steps_bytes),
            max_children: Some(bounds.max_children),
            max_depth: Some(bounds.max_depth),
            max_lifetime: Some(bounds.max_lifetime),
            fuel_runs: Some(bounds.fuel_runs),
        }
    }
}
