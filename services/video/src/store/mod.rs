//! Diesel queries of the video service's tables. Functions take a connection and return
//! `QueryResult`; callers own the transaction.

pub mod calls;
pub mod lobby;
pub mod meetings;
pub mod recordings;
