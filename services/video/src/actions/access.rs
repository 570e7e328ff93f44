//! Who may see and act on which call.

use diesel_async::AsyncPgConnection;
use sb_auth::policy::{self, AppointmentAccess};
use sb_auth::{Principal, Role};
use sb_db::models::{Appointment, find_appointment_any_org};
use sb_platform::ApiError;
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use uuid::Uuid;

use crate::error::VideoError;
use crate::store::calls::{self, Call, Scope};

fn access_of(appointment: &Appointment) -> AppointmentAccess {
    AppointmentAccess {
        org_id: appointment.org_id.into(),
        team_id: appointment.team_id.map(Into::into),
        host_user_id: appointment.host_user_id.into(),
        guest_user_id: appointment.guest_user_id.map(Into::into),
        setter_user_id: appointment.setter_user_id.map(Into::into),
    }
}

/// The appointment if `principal` may access it: another org's (or a missing) appointment is
/// 404, a same-org appointment the role does not open is 403.
pub async fn appointment(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    id: Uuid,
) -> Result<Appointment, VideoError> {
    allowed(principal, find_appointment_any_org(conn, id).await?)
}

/// The appointment, under the same rules as [`appointment`], and its call if it has one, in one
/// read.
pub async fn appointment_with_call(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    id: Uuid,
) -> Result<(Appointment, Option<Call>), VideoError> {
    match calls::find_appointment_with_call(conn, id).await? {
        Some((appointment, call)) => Ok((allowed(principal, Some(appointment))?, call)),
        None => Err(VideoError::not_found("appointment")),
    }
}

fn allowed(principal: &Principal, found: Option<Appointment>) -> Result<Appointment, VideoError> {
    let appointment = found
        .filter(|a| principal.role == Role::Admin || a.org_id == principal.org_id.as_uuid())
        .ok_or(VideoError::not_found("appointment"))?;
    if !policy::can_access_appointment(principal, &access_of(&appointment)) {
        return Err(VideoError::forbidden(
            Code::Forbidden,
            "your role does not give access to this appointment".to_owned(),
        ));
    }
    Ok(appointment)
}

/// The call and its appointment, under the same rules as [`appointment`].
pub async fn call(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    id: Uuid,
) -> Result<(Call, Appointment), VideoError> {
    let call = calls::find(conn, id)
        .await?
        .filter(|c| principal.role == Role::Admin || c.org_id == principal.org_id.as_uuid())
        .ok_or(VideoError::not_found("call"))?;
    let appointment = self::appointment(conn, principal, call.appointment_id)
        .await
        .map_err(|e| match e {
            VideoError::Api(ApiError::NotFound(_)) => VideoError::not_found("call"),
            other => other,
        })?;
    Ok((call, appointment))
}

/// Whether `principal` may run the call (recording, lobby, host controls): its host, or a
/// leader of the org (ADMIN, CEO, DIRECTOR, a MANAGER of its team).
pub fn can_host(principal: &Principal, appointment: &Appointment) -> bool {
    appointment.host_user_id == principal.user_id.as_uuid()
        || matches!(principal.role, Role::Admin | Role::Ceo | Role::Director)
        || (principal.role == Role::Manager
            && appointment
                .team_id
                .is_some_and(|team| principal.is_in_team(team.into())))
}

pub fn require_host(principal: &Principal, appointment: &Appointment) -> Result<(), VideoError> {
    if can_host(principal, appointment) {
        Ok(())
    } else {
        Err(VideoError::forbidden(
            Code::Forbidden,
            "only the host or a leader of the organisation may do this".to_owned(),
        ))
    }
}

/// The calls `principal` may list and count: the same rule as reading one by id. ADMIN (platform
/// staff) sees every org's, or the org `org` names; everyone else their own org's, whatever
/// `org` says.
pub fn scope(principal: &Principal, org: Option<Uuid>) -> Scope {
    let own_org = principal.org_id.as_uuid();
    let user = principal.user_id.as_uuid();
    match principal.role {
        Role::Admin => org.map_or(Scope::Everywhere, Scope::Org),
        Role::Ceo | Role::Director => Scope::Org(own_org),
        Role::Manager => Scope::Teams {
            org: own_org,
            user,
            teams: principal.teams.iter().map(|t| t.as_uuid()).collect(),
        },
        Role::Setter => Scope::Own {
            org: own_org,
            user,
            setter: true,
        },
        Role::Closer | Role::Member => Scope::Own {
            org: own_org,
            user,
            setter: false,
        },
    }
}
