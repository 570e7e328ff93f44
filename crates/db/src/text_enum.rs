//! Status, mode and kind columns: `text` in PostgreSQL, a domain enum in Rust, mapped once.
//! (Like Lemmy's `db_schema_file/src/enums.rs`, but over `text` columns: the enum lives in its
//! service's `domain/`, this crate only provides the mapping.)

/// Maps domain enums to `text` columns. The enum keeps its spelling in one place, its
/// `as_str()` (what is written) and `FromStr` (what is read; a value it refuses is a
/// deserialization error naming the type, never a silent default), and derives
/// `diesel::expression::AsExpression` and `diesel::deserialize::FromSqlRow` with `#[diesel(sql_type = Text)]`:
///
/// ```ignore
/// #[derive(Debug, Clone, Copy, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
/// #[diesel(sql_type = diesel::sql_types::Text)]
/// pub enum CallStatus { Pending, Ongoing }
/// sb_db::text_enum!(CallStatus);
/// ```
///
/// Store structs then hold the enum (`pub status: CallStatus`) and queries compare with it
/// (`video_calls::status.eq(CallStatus::Ongoing)`).
#[macro_export]
macro_rules! text_enum {
    ($($ty:ty),+ $(,)?) => {$(
        impl $crate::diesel::serialize::ToSql<$crate::diesel::sql_types::Text, $crate::diesel::pg::Pg>
            for $ty
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut $crate::diesel::serialize::Output<'b, '_, $crate::diesel::pg::Pg>,
            ) -> $crate::diesel::serialize::Result {
                <str as $crate::diesel::serialize::ToSql<
                    $crate::diesel::sql_types::Text,
                    $crate::diesel::pg::Pg,
                >>::to_sql(self.as_str(), out)
            }
        }

        impl $crate::diesel::deserialize::FromSql<$crate::diesel::sql_types::Text, $crate::diesel::pg::Pg>
            for $ty
        {
            fn from_sql(
                bytes: <$crate::diesel::pg::Pg as $crate::diesel::backend::Backend>::RawValue<'_>,
            ) -> $crate::diesel::deserialize::Result<Self> {
                let text = <String as $crate::diesel::deserialize::FromSql<
                    $crate::diesel::sql_types::Text,
                    $crate::diesel::pg::Pg,
                >>::from_sql(bytes)?;
                text.parse::<$ty>().map_err(|error| {
                    format!("{} column: {error}", stringify!($ty)).into()
                })
            }
        }
    )+};
}
