//! The domain: rollback vocabulary with no I/O and no SDK types.

pub mod model;
