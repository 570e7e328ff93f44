//! Diesel queries of the monitoring tables. Functions take a connection and return
//! `QueryResult`; callers own the transaction.

pub mod audit;
pub mod reps;
pub mod sessions;
pub mod settings;
pub mod stream_tickets;
