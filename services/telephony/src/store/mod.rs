//! Diesel queries of the telephony service's tables. Functions take a connection and return
//! `QueryResult`; callers own the transaction.

pub mod calls;
pub mod conferences;
pub mod followups;
pub mod numbers;
pub mod quality;
pub mod recordings;
