//! The roster from the CRM: `crm.user.created|updated|deactivated` (durable `monitoring-users`)
//! into `monitoring_reps`, keeping the highest version, so supervisors see every rep in their
//! scope, offline ones too, with the CRM's name and teams.

use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_events::consumer::{ConsumerConfig, Handler, HandlerError};
use sb_events::proto::{User, UserCreated, UserDeactivated, UserRole, UserUpdated};
use sb_events::{Domain, EventEnvelope};
use uuid::Uuid;

use crate::store::reps::{self, CrmUser};

/// Longest display name kept (the CRM's field is free text).
const MAX_NAME_CHARS: usize = 200;
/// Most teams kept per user (a bound on what an event can make us store).
const MAX_TEAMS: usize = 100;

pub fn users_consumer() -> ConsumerConfig {
    ConsumerConfig::new(crate::SERVICE, "users", Domain::Crm, "crm.user.>")
}

pub struct Users;

fn uuid(field: &str, value: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(value)
        .map_err(|e| HandlerError::permanent(format!("{field} is not a UUID: {e}")))
}

impl Handler for Users {
    fn handle<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            let user: Option<User> = if event.is::<UserCreated>() {
                event.decode::<UserCreated>().map(|e| e.user)
            } else if event.is::<UserUpdated>() {
                event.decode::<UserUpdated>().map(|e| e.user)
            } else if event.is::<UserDeactivated>() {
                event.decode::<UserDeactivated>().map(|e| {
                    e.user.map(|mut u| {
                        u.active = false;
                        u
                    })
                })
            } else {
                // A crm.user.* event this version does not know: nothing to project.
                tracing::debug!(event_type = %event.event_type, "ignoring unknown user event");
                return Ok(());
            }
            .map_err(HandlerError::permanent)?;
            let user =
                user.ok_or_else(|| HandlerError::permanent("user event without a user"))?;
            if user.version < 0 {
                return Err(HandlerError::permanent(format!(
                    "negative version {}",
                    user.version
                )));
            }
            let role = UserRole::try_from(user.role)
                .ok()
                .filter(|r| *r != UserRole::Unspecified)
                .ok_or_else(|| HandlerError::permanent(format!("unknown role {}", user.role)))?;
            let role_name = role.as_str_name().trim_start_matches("USER_ROLE_");
            let teams = user
                .team_ids
                .iter()
                .take(MAX_TEAMS)
                .map(|t| uuid("team_ids", t).map(Some))
                .collect::<Result<Vec<_>, _>>()?;
            let name: String = user.display_name.chars().take(MAX_NAME_CHARS).collect();
            let row = CrmUser {
                user_id: uuid("id", &user.id)?,
                org_id: uuid("org_id", &user.org_id)?,
                role: role_name,
                teams,
                name: &name,
                version: user.version,
                on_roster: user.active && matches!(role, UserRole::Closer | UserRole::Setter),
            };
            let written = reps::apply_crm_user(conn, &row).await?;
            // No name here: personal data stays out of logs.
            tracing::debug!(user.id = %row.user_id, version = row.version, on_roster = row.on_roster, written, "projected CRM user");
            Ok(())
        }
        .boxed()
    }
}
