//! The scheduler's side of durable workflows (see
//! [`taskhost_model::workflow`]): where a run's steps are written
//! ([`steps`]), events sent to an execution ([`events`]), and child runs —
//! spawned, joined, woken, cancelled with their parent ([`children`]).

mod children;
mod events;
mod steps;

pub use events::{Delivered, DeliveryError};
pub(crate) use steps::StepWriter;
