//! The bounds a node holds its workflows to, as one value the node's
//! settings make (`taskhost serve --workflow-*`) and every check reads.
//!
//! Each bound's default is also the most a node may set: a node may hold
//! workflows tighter, never looser. Retention keeps a child as long as its
//! parent may live ([`MAX_LIFETIME`]), and a record one node wrote must fit
//! the stored ceiling every node reads; so the defaults are ceilings. Give
//! every node of a cluster the same values: a run that replays on a node
//! with tighter bounds keeps its recorded steps, but is held to that node's
//! bounds for the next ones.

use super::children::{MAX_CHILDREN, MAX_DEPTH};
use super::lifetime::{MAX_LIFETIME, TOTAL_FUEL_RUNS};
use super::{MAX_STEP_RESULT_BYTES, MAX_STEPS, MAX_STEPS_BYTES};
use std::time::Duration;

/// The bounds of a workflow (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowBounds {
    /// Most steps one execution may record.
    pub max_steps: usize,
    /// The largest result of one step, in bytes.
    pub max_step_result_bytes: usize,
    /// The most bytes of step results one execution may keep.
    pub max_steps_bytes: usize,
    /// Most children one execution may spawn, over all its spawns.
    pub max_children: usize,
    /// How deep children may nest (a top-level run is at depth 0).
    pub max_depth: u32,
    /// The longest a workflow lives, from its creation.
    pub max_lifetime: Duration,
    /// A workflow's fuel over all its runs, as a multiple of its per-run
    /// fuel limit.
    pub fuel_runs: u64,
}

impl Default for WorkflowBounds {
    fn default() -> Self {
        WorkflowBounds {
            max_steps: MAX_STEPS,
            max_step_result_bytes: MAX_STEP_RESULT_BYTES,
            max_steps_bytes: MAX_STEPS_BYTES,
            max_children: MAX_CHILDREN,
            max_depth: MAX_DEPTH,
            max_lifetime: MAX_LIFETIME,
            fuel_runs: TOTAL_FUEL_RUNS,
        }
    }
}

/// A node setting past its ceiling, or zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--workflow-{setting} is {value}; it must be at least 1 and at most {max} (its default)")]
pub struct BoundsError {
    /// The setting, as its flag names it (after `--workflow-`).
    pub setting: &'static str,
    pub value: String,
    pub max: String,
}

impl WorkflowBounds {
    /// Whether every bound is at least 1 and at most its default.
    pub fn check(&self) -> Result<(), BoundsError> {
        let most = WorkflowBounds::default();
        let counts: [(&'static str, u64, u64); 6] = [
            ("max-steps", self.max_steps as u64, most.max_steps as u64),
            (
                "max-step-bytes",
                self.max_step_result_bytes as u64,
                most.max_step_result_bytes as u64,
            ),
            (
                "max-steps-bytes",
                self.max_steps_bytes as u64,
                most.max_steps_bytes as u64,
            ),
            (
                "max-children",
                self.max_children as u64,
                most.max_children as u64,
            ),
            (
                "max-depth",
                u64::from(self.max_depth),
                u64::from(most.max_depth),
            ),
            ("fuel-runs", self.fuel_runs, most.fuel_runs),
        ];
        for (setting, value, max) in counts {
            if value == 0 || value > max {
                return Err(BoundsError {
                    setting,
                    value: value.to_string(),
                    max: max.to_string(),
                });
            }
        }
        if self.max_lifetime.is_zero() || self.max_lifetime > most.max_lifetime {
            return Err(BoundsError {
                setting: "max-lifetime",
                value: crate::time::human(self.max_lifetime),
                max: crate::time::human(most.max_lifetime),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_may_tighten_a_bound_but_not_loosen_it() {
        assert_eq!(WorkflowBounds::default().check(), Ok(()));
        let tight = WorkflowBounds {
            max_children: 10,
            max_lifetime: Duration::from_secs(3600),
            ..WorkflowBounds::default()
        };
        assert_eq!(tight.check(), Ok(()));
        let loose = WorkflowBounds {
            max_children: MAX_CHILDREN + 1,
            ..WorkflowBounds::default()
        };
        let err = loose.check().expect_err("past the ceiling");
        assert_eq!(err.setting, "max-children");
        assert!(err.to_string().contains("at most 1000"), "{err}");
        let zero = WorkflowBounds {
            max_depth: 0,
            ..WorkflowBounds::default()
        };
        assert_eq!(zero.check().expect_err("zero").setting, "max-depth");
        let long = WorkflowBounds {
            max_lifetime: MAX_LIFETIME * 2,
            ..WorkflowBounds::default()
        };
        assert_eq!(long.check().expect_err("longer").setting, "max-lifetime");
    }
}
