//! The roster from the CRM: `crm.user.created|updated|deactivated` (durable `monitoring-users`)
//! into `monitoring_reps`, keeping the highest version, so supervisors see every rep in their
//! scope, offline ones too, with the CRM's name and teams. A user deactivated in the CRM stops
//! every monitoring session they are in, as supervisor or as rep: someone who left the company
//! must not keep listening to calls until their token expires.

use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sb_events::consumer::{ConsumerConfig, Handler, HandlerError};
use sb_events::proto::{User, UserCreated, UserDeactivated, UserRole, UserUpdated};
use sb_events::{Domain, EventEnvelope};
use uuid::Uuid;

use crate::actions::{presence, sessions};
use crate::state::AppState;
use crate::store::reps::{self, CrmUser};
use crate::store::sessions as session_store;

/// Longest display name kept (the CRM's field is free text).
const MAX_NAME_CHARS: usize = 200;
/// Most teams kept per user (a bound on what an event can make us store).
const MAX_TEAMS: usize = 100;

pub fn users_consumer() -> ConsumerConfig {
    ConsumerConfig::new(crate::SERVICE, "users", Domain::Crm, "crm.user.>")
}

pub struct Users {
    pub state: AppState,
}

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
            if user.active || !written {
                return Ok(());
            }
            let outbox = &self.state.outbox;
            let mut stopped = Vec::new();
            for session in session_store::open_involving(conn, row.org_id, row.user_id).await? {
                if sessions::stop_in(conn, outbox, &session, None, "user_deactivated", None)
                    .await
                    .map_err(HandlerError::retry)?
                {
                    stopped.push(session);
                }
            }
            let reps: std::collections::BTreeSet<Uuid> =
                stopped.iter().map(|s| s.rep_id).collect();
            for rep in reps {
                presence::refresh(conn, outbox, rep)
                    .await
                    .map_err(HandlerError::retry)?;
            }
            // Best effort, like every stop: a supervisor left in a room is removed by the
            // reconciliation job; a phone supervisor by telephony on the stopped event.
            for session in &stopped {
                sessions::disconnect(&self.state, session).await;
            }
            Ok(())
        }
        .boxed()
    }
}
