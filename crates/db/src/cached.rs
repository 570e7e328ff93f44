//! Prepared-statement caching by SQL text, for the statements diesel will not cache by type.
//!
//! diesel keys its prepared-statement cache by a query's Rust type, so it refuses to cache any
//! statement whose SQL may differ between two values of one type: every `UPDATE` (a changeset's
//! `Option` fields come and go), every `ON CONFLICT … DO UPDATE`, every insert with an optional
//! column (`DEFAULT`) and every `sql_query`. diesel-async then prepares such a statement again each
//! time it runs: a Parse round trip, and a plan, before the Bind/Execute round trip. A statement
//! wrapped in [`Cached`] is cached by its SQL text and bind types instead — the key diesel itself
//! uses for queries without a static type id — which is sound whatever SQL the value produces.
//!
//! Only for statements whose SQL takes a bounded number of forms (the cache is per connection
//! and unbounded): never for SQL built from values (`format!` into `sql_query`, `IN` lists).

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;

/// A statement cached by its SQL text; see the module docs. Built with [`CacheBySql::cached`].
#[derive(Debug, Clone, Copy)]
pub struct Cached<Q>(Q);

/// `.cached()` on any diesel statement.
pub trait CacheBySql: Sized {
    /// This statement, prepared once per connection and SQL text, then reused.
    fn cached(self) -> Cached<Self> {
        Cached(self)
    }
}

impl<Q> CacheBySql for Q {}

impl<Q, DB> QueryFragment<DB> for Cached<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    /// The text is the cache key, so any statement is safe to cache.
    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

/// No static id: the statement cache then keys the statement by its SQL text and bind types.
impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}
