//! SeaORM entities for the reads that are not on the hot path.

pub mod attempts;
pub mod deliveries;
pub mod outcomes;
