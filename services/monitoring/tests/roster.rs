//! The roster: every rep in the supervisor's scope from the CRM's `crm.user.*` events, offline
//! ones too, keeping the highest version; deactivated or re-roled users leave it.

mod common;

use std::time::Duration;

use common::{TestMonitoring, User, rep_online};
use sb_auth::Role;
use sb_events::proto::{User as CrmUser, UserCreated, UserDeactivated, UserRole, UserUpdated};
use sb_testkit::{Result, wait_until};
use serde_json::Value;
use uuid::Uuid;

fn crm_user(
    id: Uuid,
    org: Uuid,
    role: UserRole,
    teams: &[Uuid],
    name: &str,
    version: i64,
) -> CrmUser {
    CrmUser {
        id: id.to_string(),
        org_id: org.to_string(),
        role: role as i32,
        team_ids: teams.iter().map(Uuid::to_string).collect(),
        display_name: name.to_owned(),
        active: true,
        version,
    }
}

async fn publish<E: sb_events::Event>(monitoring: &TestMonitoring, event: &E) -> Result {
    let js = monitoring.nats.jetstream();
    sb_events::publish::publish(&js, &monitoring.nats.namespace(), event).await?;
    Ok(())
}

/// The roster as `user` sees it: (id, name, status) of each rep.
async fn roster(monitoring: &TestMonitoring, user: &User) -> Result<Vec<(String, String, String)>> {
    let (status, body) = monitoring.get_json(user, "/monitoring/reps").await?;
    assert_eq!(status, 200, "{body}");
    Ok(body["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r: &Value| {
            (
                r["userId"].as_str().unwrap_or_default().to_owned(),
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

/// Waits (bounded) until the roster `user` sees satisfies `check`.
async fn roster_until(
    monitoring: &TestMonitoring,
    user: &User,
    what: &str,
    check: impl Fn(&[(String, String, String)]) -> bool,
) -> Result<Vec<(String, String, String)>> {
    wait_until(Duration::from_secs(10), what, || async {
        roster(monitoring, user).await.is_ok_and(|r| check(&r))
    })
    .await?;
    roster(monitoring, user).await
}

#[tokio::test]
async fn crm_users_fill_the_roster_offline_too_within_scope_and_by_version() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let manager = User::new(org, Role::Manager).in_team(team);
    let ceo = User::new(org, Role::Ceo);
    let (closer, setter, outside, boss) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    for user in [
        crm_user(closer, org, UserRole::Closer, &[team], "Ada Closer", 1),
        crm_user(setter, org, UserRole::Setter, &[team], "Bob Setter", 1),
        crm_user(outside, org, UserRole::Closer, &[], "Cy Outside", 1),
        // Not a rep: never on a roster.
        crm_user(boss, org, UserRole::Director, &[], "Di Director", 1),
    ] {
        publish(&monitoring, &UserCreated { user: Some(user) }).await?;
    }
    // Nobody asked for a token: all offline, listed by name, the manager sees their team only.
    let seen = roster_until(&monitoring, &ceo, "the CEO's roster", |r| r.len() == 3).await?;
    assert_eq!(
        seen,
        [
            (
                closer.to_string(),
                "Ada Closer".to_owned(),
                "OFFLINE".to_owned()
            ),
            (
                setter.to_string(),
                "Bob Setter".to_owned(),
                "OFFLINE".to_owned()
            ),
            (
                outside.to_string(),
                "Cy Outside".to_owned(),
                "OFFLINE".to_owned()
            ),
        ]
    );
    let ids: Vec<String> = roster(&monitoring, &manager)
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(ids, [closer.to_string(), setter.to_string()]);

    // A rename at version 3, then a late version 2 that must not undo it.
    publish(
        &monitoring,
        &UserUpdated {
            user: Some(crm_user(
                closer,
                org,
                UserRole::Closer,
                &[team],
                "Ada Renamed",
                3,
            )),
        },
    )
    .await?;
    publish(
        &monitoring,
        &UserUpdated {
            user: Some(crm_user(closer, org, UserRole::Closer, &[], "Ada Stale", 2)),
        },
    )
    .await?;
    // The deactivation of the setter, behind both in the same stream: once it is applied, the
    // two updates before it were too.
    let mut gone = crm_user(setter, org, UserRole::Setter, &[team], "Bob Setter", 2);
    gone.active = false;
    publish(&monitoring, &UserDeactivated { user: Some(gone) }).await?;
    let seen = roster_until(&monitoring, &manager, "the setter to leave", |r| {
        r.len() == 1
    })
    .await?;
    assert_eq!(
        seen,
        [(
            closer.to_string(),
            "Ada Renamed".to_owned(),
            "OFFLINE".to_owned()
        )],
        "version 3 stands, the setter left"
    );
    // A manager who moves the outside closer into another role: off the CEO's roster too.
    publish(
        &monitoring,
        &UserUpdated {
            user: Some(crm_user(
                outside,
                org,
                UserRole::Manager,
                &[team],
                "Cy Outside",
                2,
            )),
        },
    )
    .await?;
    roster_until(&monitoring, &ceo, "the re-roled user to leave", |r| {
        r.len() == 1 && r[0].0 == closer.to_string()
    })
    .await?;

    // Another org's CEO sees none of them.
    let stranger = User::new(Uuid::now_v7(), Role::Ceo);
    assert!(roster(&monitoring, &stranger).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_rep_with_a_token_before_the_crm_event_keeps_working_and_gets_the_crm_name() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let rep = User::new(org, Role::Closer).in_team(team);
    rep_online(&monitoring, &rep).await?;
    let seen = roster(&monitoring, &ceo).await?;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].2, "ONLINE");

    publish(
        &monitoring,
        &UserCreated {
            user: Some(crm_user(
                rep.id,
                org,
                UserRole::Closer,
                &[team],
                "Eve From CRM",
                1,
            )),
        },
    )
    .await?;
    let seen = roster_until(&monitoring, &ceo, "the CRM's name", |r| {
        r.first().is_some_and(|r| r.1 == "Eve From CRM")
    })
    .await?;
    assert_eq!(seen[0].2, "ONLINE", "presence is kept");
    // The rep's next token request (its JWT still says the old name) neither fails nor undoes
    // the CRM's data.
    let (status, body) = monitoring
        .post_empty(&rep, "/monitoring/rep/session")
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(roster(&monitoring, &ceo).await?[0].1, "Eve From CRM");

    // Deactivated: off the roster, even though their presence row stays.
    let mut gone = crm_user(rep.id, org, UserRole::Closer, &[team], "Eve From CRM", 2);
    gone.active = false;
    publish(&monitoring, &UserDeactivated { user: Some(gone) }).await?;
    roster_until(&monitoring, &ceo, "the deactivated rep to leave", |r| {
        r.is_empty()
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_supervisor_deactivated_in_the_crm_stops_listening_at_once() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let rep = User::new(org, Role::Closer).in_team(team);
    let manager = User::new(org, Role::Manager).in_team(team);
    let ceo = User::new(org, Role::Ceo);
    let room = rep_online(&monitoring, &rep).await?;
    let start = |who| {
        monitoring.post_json(
            who,
            "/monitoring/sessions",
            serde_json::json!({"repId": rep.id}),
        )
    };
    let (status, started) = start(&manager).await?;
    assert_eq!(status, 201, "{started}");
    let id = started["session"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let identity = format!("sup_{}", manager.id);
    monitoring.livekit.join(&room, &identity, "Manager");
    // The CEO's session on the same rep is not the deactivated user's: it stays.
    let (status, kept) = start(&ceo).await?;
    assert_eq!(status, 201, "{kept}");

    // Deactivated in the CRM while listening (their token is still valid for a while).
    let mut gone = crm_user(manager.id, org, UserRole::Manager, &[team], "Max", 1);
    gone.active = false;
    publish(&monitoring, &UserDeactivated { user: Some(gone) }).await?;
    let path = format!("/monitoring/sessions/{id}");
    wait_until(Duration::from_secs(10), "the session to stop", || async {
        monitoring
            .get_json(&ceo, &path)
            .await
            .is_ok_and(|(_, s)| s["status"] == "STOPPED")
    })
    .await?;
    let (_, session) = monitoring.get_json(&ceo, &path).await?;
    assert_eq!(session["stopReason"], "user_deactivated", "{session}");
    // Taken out of the rep's room, not only marked stopped.
    assert!(
        !monitoring
            .livekit
            .participants(&room)
            .iter()
            .any(|p| p.identity == identity),
        "the deactivated supervisor is still in the room"
    );
    let kept_path = format!(
        "/monitoring/sessions/{}",
        kept["session"]["id"].as_str().unwrap_or_default()
    );
    let (_, kept) = monitoring.get_json(&ceo, &kept_path).await?;
    assert_eq!(kept["status"], "ACTIVE", "{kept}");
    Ok(())
}
