//! The domain: rollback vocabulary with no I/O and no SDK types.
//!
//! - `model`: registry nouns (`Digest`, `Tag`, `ImageRef`, …), parsed once at the edge.
//! - `rollback`: `RollbackId`, `Actor`, `Timestamp`, and the `State` machine.
//! - `command`: chat text → `Command` (the `/rollback` grammar).
//! - `policy`: the two-person rule, one pure function.

pub mod clock;
pub mod command;
pub mod model;
pub mod policy;
pub mod reconcile;
pub mod record;
pub mod rollback;
