//! Managing the org's numbers: org leaders assign them; owners read their own.

use diesel_async::AsyncConnection;
use sb_auth::Principal;
use sb_platform::ApiErrorExt as _;
use sb_platform::Code;
use sb_platform::pagination::{Page, PageRequest};
use uuid::Uuid;

use crate::actions::access;
use crate::domain::phone::E164;
use crate::error::TelephonyError;
use crate::state::AppState;
use crate::store::numbers::{self, NumberSettings, PhoneNumber};

fn require_admin(principal: &Principal) -> Result<(), TelephonyError> {
    if access::is_number_admin(principal) {
        Ok(())
    } else {
        Err(TelephonyError::forbidden(
            Code::Forbidden,
            "only CEO, DIRECTOR or ADMIN manage phone numbers".to_owned(),
        ))
    }
}

/// `PUT /api/numbers/{e164}`: creates or replaces the number's settings. A number another org
/// holds is a conflict (one Twilio number, one org). Returns whether it was created.
pub async fn put(
    state: &AppState,
    principal: &Principal,
    org: Option<Uuid>,
    e164: &E164,
    settings: NumberSettings,
) -> Result<(PhoneNumber, bool), TelephonyError> {
    require_admin(principal)?;
    let org = access::org_of(principal, org)?;
    let mut conn = state.conn().await?;
    let settings = &settings;
    state
        .outbox
        .wake_on_commit(conn.transaction::<_, TelephonyError, _>(async |conn| {
            match numbers::lock(conn, e164.as_str()).await? {
                Some(existing) if existing.org_id != org => Err(TelephonyError::conflict(
                    Code::NumberTaken,
                    "this number belongs to another organisation",
                )),
                Some(existing) => Ok((numbers::update(conn, existing.id, settings).await?, false)),
                None => match numbers::insert(conn, org, e164.as_str(), settings).await {
                    Ok(number) => Ok((number, true)),
                    // Two first PUTs of one number at once: the loser's insert hits the unique
                    // index.
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => Err(TelephonyError::conflict(
                        Code::ConcurrentUpdate,
                        "the number was created at the same time, retry",
                    )),
                    Err(error) => Err(error.into()),
                },
            }
        }))
        .await
}

/// The number if `principal` may read it: org leaders, and its owner. Another org's is 404.
pub async fn get(
    state: &AppState,
    principal: &Principal,
    org: Option<Uuid>,
    e164: &E164,
) -> Result<PhoneNumber, TelephonyError> {
    let org = access::org_of(principal, org)?;
    let mut conn = state.conn().await?;
    let number = numbers::find(&mut conn, e164.as_str())
        .await?
        .filter(|n| n.org_id == org)
        .ok_or(TelephonyError::not_found("number"))?;
    if access::is_number_admin(principal)
        || number.owner_user_id == Some(principal.user_id.as_uuid())
    {
        Ok(number)
    } else {
        Err(TelephonyError::forbidden(
            Code::Forbidden,
            "only org leaders and the number's owner see its settings".to_owned(),
        ))
    }
}

/// `DELETE /api/numbers/{e164}`: the number leaves the org; its calls keep their history.
pub async fn delete(
    state: &AppState,
    principal: &Principal,
    org: Option<Uuid>,
    e164: &E164,
) -> Result<(), TelephonyError> {
    require_admin(principal)?;
    let org = access::org_of(principal, org)?;
    let mut conn = state.conn().await?;
    let number = numbers::find(&mut conn, e164.as_str())
        .await?
        .filter(|n| n.org_id == org)
        .ok_or(TelephonyError::not_found("number"))?;
    numbers::delete(&mut conn, number.id).await?;
    Ok(())
}

/// `GET /api/numbers`: org leaders see the org's numbers, everyone else their own.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    org: Option<Uuid>,
    page: PageRequest,
) -> Result<Page<PhoneNumber>, TelephonyError> {
    let org = access::org_of(principal, org)?;
    let owner = (!access::is_number_admin(principal)).then(|| principal.user_id.as_uuid());
    let mut conn = state.conn().await?;
    let (numbers, total) =
        numbers::list(&mut conn, org, owner, page.limit(), page.offset()).await?;
    Ok(page.wrap(numbers, total))
}
