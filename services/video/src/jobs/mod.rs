//! Periodic jobs.

pub mod reconcile;
