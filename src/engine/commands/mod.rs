//! One function per command (mini-redis style): the engine loop only dispatches here.

mod cancel;
mod history;
mod release;
mod request;
mod status;
mod vote;

pub(in crate::engine) use request::{PlanFailure, Wanted};
