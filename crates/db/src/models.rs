//! Rows of the shared tables, and the queries services share on them.

use crate::CacheBySql;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schema::{appointments, webhook_receipts};

/// The lead of an appointment, as the CRM sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lead {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// E.164.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Where an appointment takes place (`appointments.kind`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum AppointmentKind {
    Remote,
    Onsite,
}

impl AppointmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Remote => "remote",
            Self::Onsite => "onsite",
        }
    }
}

impl std::str::FromStr for AppointmentKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Remote, Self::Onsite]
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("expected remote or onsite, got {s:?}"))
    }
}

/// An appointment's status in the CRM (`appointments.status`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum AppointmentStatus {
    Scheduled,
    Confirmed,
    Cancelled,
    Completed,
    NoShow,
}

impl AppointmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
            Self::NoShow => "no_show",
        }
    }
}

impl std::str::FromStr for AppointmentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Scheduled,
            Self::Confirmed,
            Self::Cancelled,
            Self::Completed,
            Self::NoShow,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| {
            format!("expected scheduled, confirmed, cancelled, completed or no_show, got {s:?}")
        })
    }
}

crate::text_enum!(AppointmentKind, AppointmentStatus);

/// Read model of a CRM appointment (written only by the appointment projector).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = appointments, check_for_backend(diesel::pg::Pg))]
pub struct Appointment {
    pub id: Uuid,
    pub org_id: Uuid,
    pub host_user_id: Uuid,
    pub guest_user_id: Option<Uuid>,
    pub setter_user_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub lead: serde_json::Value,
    pub scheduled_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub kind: AppointmentKind,
    pub status: AppointmentStatus,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Appointment {
    /// The lead, tolerating fields the CRM may add later.
    pub fn lead(&self) -> Lead {
        serde_json::from_value(self.lead.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = appointments)]
pub struct NewAppointment {
    pub id: Uuid,
    pub org_id: Uuid,
    pub host_user_id: Uuid,
    pub guest_user_id: Option<Uuid>,
    pub setter_user_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub lead: serde_json::Value,
    pub scheduled_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub kind: AppointmentKind,
    pub status: AppointmentStatus,
    pub version: i64,
}

/// The appointment `id` of `org_id`; another org's appointment is `None`, like a missing one.
pub async fn find_appointment(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<Appointment>> {
    appointments::table
        .filter(appointments::id.eq(id))
        .filter(appointments::org_id.eq(org_id))
        .select(Appointment::as_select())
        .first(conn)
        .await
        .optional()
}

/// The appointment `id` whatever its org: only for callers that apply the access policy
/// themselves (ADMIN may cross orgs).
pub async fn find_appointment_any_org(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<Appointment>> {
    appointments::table
        .find(id)
        .select(Appointment::as_select())
        .first(conn)
        .await
        .optional()
}

/// Inserts or updates an appointment unless the stored version is already the same or newer.
/// Returns whether a row was written.
pub async fn upsert_appointment(
    conn: &mut AsyncPgConnection,
    row: &NewAppointment,
) -> QueryResult<bool> {
    use diesel::query_dsl::methods::FilterDsl;
    use diesel::upsert::excluded;
    let upsert = diesel::insert_into(appointments::table)
        .values(row)
        .on_conflict(appointments::id)
        .do_update()
        .set((row, appointments::updated_at.eq(diesel::dsl::now)));
    // ON CONFLICT … DO UPDATE … WHERE: an older or equal version arriving late changes nothing.
    let written = FilterDsl::filter(
        upsert,
        appointments::version.lt(excluded(appointments::version)),
    )
    .cached()
    .execute(conn)
    .await?;
    Ok(written == 1)
}

/// Records that a provider webhook was applied. Returns `false` when it already was, so the
/// caller skips the effect (call it inside the effect's transaction).
pub async fn record_webhook_once(
    conn: &mut AsyncPgConnection,
    provider: &str,
    key: &str,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(webhook_receipts::table)
        .values((
            webhook_receipts::provider.eq(provider),
            webhook_receipts::key.eq(key),
        ))
        .on_conflict_do_nothing()
        .cached()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}
