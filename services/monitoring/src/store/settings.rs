//! Per-org monitoring policy.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sb_db::CacheBySql;
use sb_db::schema::monitoring_settings;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = monitoring_settings, check_for_backend(diesel::pg::Pg))]
pub struct Settings {
    pub notify_rep: bool,
    pub allow_coach: bool,
    pub allow_barge: bool,
    pub max_supervisors_per_rep: i32,
}

impl Default for Settings {
    /// Discreet supervision, as the seed wants; coaching and barging allowed; two supervisors.
    fn default() -> Self {
        Self {
            notify_rep: false,
            allow_coach: true,
            allow_barge: true,
            max_supervisors_per_rep: 2,
        }
    }
}

pub async fn of_org(conn: &mut AsyncPgConnection, org: Uuid) -> QueryResult<Settings> {
    Ok(monitoring_settings::table
        .find(org)
        .select(Settings::as_select())
        .first(conn)
        .await
        .optional()?
        .unwrap_or_default())
}

pub async fn save(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    settings: &Settings,
    by: Uuid,
) -> QueryResult<Settings> {
    let values = (
        monitoring_settings::notify_rep.eq(settings.notify_rep),
        monitoring_settings::allow_coach.eq(settings.allow_coach),
        monitoring_settings::allow_barge.eq(settings.allow_barge),
        monitoring_settings::max_supervisors_per_rep.eq(settings.max_supervisors_per_rep),
        monitoring_settings::updated_by.eq(by),
        monitoring_settings::updated_at.eq(diesel::dsl::now),
    );
    diesel::insert_into(monitoring_settings::table)
        .values((monitoring_settings::org_id.eq(org), values))
        .on_conflict(monitoring_settings::org_id)
        .do_update()
        .set(values)
        .returning(Settings::as_returning())
        .cached()
        .get_result(conn)
        .await
}
