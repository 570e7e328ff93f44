//! Who may see and act on which call and number.

use diesel_async::AsyncPgConnection;
use sb_auth::{Principal, Role};
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use uuid::Uuid;

use crate::error::TelephonyError;
use crate::store::calls::{self, Call, Scope};

/// Org leaders manage the org's numbers.
pub fn is_number_admin(principal: &Principal) -> bool {
    matches!(principal.role, Role::Admin | Role::Ceo | Role::Director)
}

/// The org a request acts on: the caller's, or for ADMIN (platform staff) the one asked for.
pub fn org_of(principal: &Principal, requested: Option<Uuid>) -> Result<Uuid, TelephonyError> {
    match requested {
        Some(org) if principal.role == Role::Admin => Ok(org),
        Some(org) if org == principal.org_id.as_uuid() => Ok(org),
        Some(_) => Err(TelephonyError::forbidden(
            Code::Forbidden,
            "only ADMIN may act on another organisation".to_owned(),
        )),
        None => Ok(principal.org_id.as_uuid()),
    }
}

/// The calls `principal` may see: reps their own, managers their teams' (and their own), CEO
/// and DIRECTOR the org, ADMIN any org (`org` picks it).
pub fn scope(principal: &Principal, org: Uuid) -> Scope {
    let user = principal.user_id.as_uuid();
    match principal.role {
        Role::Admin | Role::Ceo | Role::Director => Scope::Org(org),
        Role::Manager => Scope::Teams {
            org,
            user,
            teams: principal.teams.iter().map(|t| t.as_uuid()).collect(),
        },
        Role::Closer | Role::Setter | Role::Member => Scope::Own { org, user },
    }
}

/// The call if `principal` may see it: another org's (or a missing) call is 404, a same-org
/// call outside the caller's scope is 403.
pub async fn call(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    id: Uuid,
) -> Result<Call, TelephonyError> {
    let call = calls::find(conn, id)
        .await?
        .filter(|c| principal.role == Role::Admin || c.org_id == principal.org_id.as_uuid())
        .ok_or(TelephonyError::not_found("call"))?;
    if !scope(principal, call.org_id).contains(&call) {
        return Err(TelephonyError::forbidden(
            Code::Forbidden,
            "this call is neither yours nor your teams'".to_owned(),
        ));
    }
    Ok(call)
}
