//! Supervisors' sessions: the scope matrix, the lifecycle with its audit and events, the org's
//! policy, limits and LiveKit failures.

mod common;

use common::{TestMonitoring, User, rep_online};
use sb_auth::Role;
use sb_testkit::Result;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn the_scope_matrix_decides_who_may_monitor_whom() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let other_org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let rep_in_team = User::new(org, Role::Closer).in_team(team);
    let rep_out_of_team = User::new(org, Role::Setter).in_team(Uuid::now_v7());
    let rep_other_org = User::new(other_org, Role::Closer).in_team(team);
    for rep in [&rep_in_team, &rep_out_of_team, &rep_other_org] {
        rep_online(&monitoring, rep).await?;
    }
    let supervisors = [
        (User::new(org, Role::Ceo), [true, true, false]),
        (User::new(org, Role::Director), [true, true, false]),
        (
            User::new(org, Role::Manager).in_team(team),
            [true, false, false],
        ),
        (
            User::new(org, Role::Manager).in_team(Uuid::now_v7()),
            [false, false, false],
        ),
        (User::new(Uuid::now_v7(), Role::Admin), [true, true, true]),
        (User::new(other_org, Role::Ceo), [false, false, true]),
    ];
    for (supervisor, expected) in &supervisors {
        for (rep, allowed) in [&rep_in_team, &rep_out_of_team, &rep_other_org]
            .iter()
            .zip(expected)
        {
            let (status, body) = monitoring
                .post_json(supervisor, "/monitoring/sessions", json!({"repId": rep.id}))
                .await?;
            let expected_status = if *allowed { 201 } else { 404 };
            assert_eq!(
                status, expected_status,
                "{:?} → {:?} rep: {body}",
                supervisor.role, rep.role
            );
            if *allowed {
                let id = body["session"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let (status, _) = monitoring
                    .post_empty(supervisor, &format!("/monitoring/sessions/{id}/stop"))
                    .await?;
                assert_eq!(status, 200);
            }
        }
        // The list shows exactly the reps in scope of the supervisor's own org.
        let (_, reps) = monitoring.get_json(supervisor, "/monitoring/reps").await?;
        let listed = reps["items"].as_array().map(Vec::len).unwrap_or(0);
        let in_own_org = if supervisor.org == org {
            expected[..2].iter().filter(|a| **a).count()
        } else if supervisor.org == other_org {
            1
        } else {
            0
        };
        assert_eq!(listed, in_own_org, "{:?}: {reps}", supervisor.role);
        assert_eq!(reps["total"], in_own_org, "{:?}: {reps}", supervisor.role);
    }
    // Reps never reach supervisor routes.
    for path in [
        "/monitoring/reps",
        "/monitoring/sessions",
        "/monitoring/audit",
        "/monitoring/stream",
    ] {
        let (status, body) = monitoring.get_json(&rep_in_team, path).await?;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, _) = monitoring
        .post_json(
            &rep_in_team,
            "/monitoring/sessions",
            json!({"repId": rep_out_of_team.id}),
        )
        .await?;
    assert_eq!(status, 403);
    Ok(())
}

async fn audit_actions(
    monitoring: &TestMonitoring,
    ceo: &User,
    session: &str,
) -> Result<Vec<(String, String)>> {
    let (status, entries) = monitoring
        .get_json(ceo, &format!("/monitoring/audit?sessionId={session}"))
        .await?;
    assert_eq!(status, 200, "{entries}");
    let mut rows: Vec<(String, String)> = entries["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["mode"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    rows.reverse();
    Ok(rows)
}

#[tokio::test]
async fn a_session_listens_pauses_coaches_barges_and_stops_with_an_audit_row_each() -> Result {
    // Behind one trusted proxy: its X-Forwarded-For entry is the client's address, whatever the
    // client put before it.
    let monitoring = TestMonitoring::spawn_with(|c| c.http.trusted_proxies = 1).await?;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let rep = User::new(org, Role::Closer).in_team(team);
    let manager = User::new(org, Role::Manager).in_team(team);
    let ceo = User::new(org, Role::Ceo);
    let room = rep_online(&monitoring, &rep).await?;

    let request = monitoring
        .app
        .post("/monitoring/sessions")
        .header("X-Forwarded-For", "198.51.100.66, 203.0.113.7")
        .json(&json!({"repId": rep.id}));
    let (status, started) = monitoring
        .app
        .send(request, Some(&monitoring.token(&manager)))
        .await?;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["session"]["status"], "ACTIVE");
    assert_eq!(started["session"]["mode"], "listen");
    let id = started["session"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let identity = format!("sup_{}", manager.id);
    assert_eq!(started["participantName"], identity);
    // Listen-only, hidden, short-lived — read by the official SDK.
    let answer = sb_testkit::livekit_node(json!({
        "op": "verify-tokens",
        "apiKey": monitoring.livekit.api_key,
        "apiSecret": monitoring.livekit.api_secret,
        "tokens": {"supervisor": started["participantToken"]},
    }))
    .await?;
    assert_eq!(
        answer["supervisor"]["video"],
        json!({"roomJoin": true, "room": room, "canPublish": false, "canSubscribe": true,
               "canPublishData": false, "canUpdateOwnMetadata": false, "hidden": true})
    );
    // Starting again hands back the same session with a fresh token.
    let (status, again) = monitoring
        .post_json(&manager, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!(
        (status, again["session"]["id"].as_str()),
        (200, Some(id.as_str()))
    );

    // The supervisor connects; each change is applied to them in LiveKit.
    monitoring.livekit.join(&room, &identity, "Manager");
    let updates = || {
        monitoring
            .livekit
            .calls()
            .iter()
            .filter(|c| c.method == "UpdateParticipant")
            .count()
    };
    let session_path = |action: &str| format!("/monitoring/sessions/{id}/{action}");
    let (status, paused) = monitoring
        .post_empty(&manager, &session_path("pause"))
        .await?;
    assert_eq!(
        (status, paused["status"].as_str()),
        (200, Some("PAUSED")),
        "{paused}"
    );
    let participant = |m: &TestMonitoring| {
        m.livekit
            .participants(&room)
            .into_iter()
            .find(|p| p.identity == identity)
            .and_then(|p| p.permission)
            .unwrap_or_default()
    };
    assert!(
        !participant(&monitoring).can_subscribe,
        "paused: hears nothing"
    );
    let (status, body) = monitoring
        .post_json(&manager, &session_path("mode"), json!({"mode": "coach"}))
        .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("session_not_active"))
    );
    let (status, _) = monitoring
        .post_empty(&manager, &session_path("resume"))
        .await?;
    assert_eq!(status, 200);
    assert!(participant(&monitoring).can_subscribe);
    let (status, coached) = monitoring
        .post_json(&manager, &session_path("mode"), json!({"mode": "coach"}))
        .await?;
    assert_eq!(
        (status, coached["mode"].as_str()),
        (200, Some("coach")),
        "{coached}"
    );
    assert!(participant(&monitoring).can_publish && participant(&monitoring).hidden);
    let (status, _) = monitoring
        .post_json(&manager, &session_path("mode"), json!({"mode": "barge"}))
        .await?;
    assert_eq!(status, 200);
    assert!(participant(&monitoring).can_publish && !participant(&monitoring).hidden);
    assert_eq!(updates(), 4);
    let (status, body) = monitoring
        .post_json(&manager, &session_path("mode"), json!({"mode": "shout"}))
        .await?;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("mode")),
        "{body}"
    );
    let (status, renewed) = monitoring
        .post_empty(&manager, &session_path("token"))
        .await?;
    assert_eq!(status, 200, "{renewed}");
    let (status, stopped) = monitoring
        .post_empty(&manager, &session_path("stop"))
        .await?;
    assert_eq!((status, stopped["status"].as_str()), (200, Some("STOPPED")));
    assert!(
        monitoring
            .livekit
            .participants(&room)
            .iter()
            .all(|p| p.identity != identity),
        "removed from the room"
    );
    let (status, _) = monitoring
        .post_empty(&manager, &session_path("token"))
        .await?;
    assert_eq!(status, 409, "a stopped session's token is not renewed");

    assert_eq!(
        audit_actions(&monitoring, &ceo, &id).await?,
        [
            ("start", "listen"),
            ("renew", "listen"),
            ("pause", "listen"),
            ("resume", "listen"),
            ("mode_change", "coach"),
            ("mode_change", "barge"),
            ("renew", "barge"),
            ("stop", "barge"),
        ]
        .map(|(a, m)| (a.to_owned(), m.to_owned()))
    );
    let (_, entries) = monitoring
        .get_json(&ceo, &format!("/monitoring/audit?sessionId={id}"))
        .await?;
    let entries = &entries["items"];
    assert!(
        entries
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| e["ip"] == "203.0.113.7" || e["action"] != "start"),
        "{entries}"
    );
    assert_eq!(
        entries[entries.as_array().map_or(0, Vec::len) - 1]["ip"],
        "203.0.113.7"
    );
    // Managers do not read the audit; it cannot be rewritten.
    let (status, _) = monitoring.get_json(&manager, "/monitoring/audit").await?;
    assert_eq!(status, 403);
    {
        use diesel_async::RunQueryDsl;
        let mut conn = monitoring.db.conn().await?;
        let tampering = diesel::sql_query("UPDATE monitoring_audit SET action = 'start'")
            .execute(&mut conn)
            .await;
        assert!(tampering.is_err(), "the audit must be append-only");
    }

    let subjects = monitoring.event_subjects().await?;
    let sessions: Vec<&str> = subjects
        .iter()
        .map(String::as_str)
        .filter(|s| s.starts_with("sb.monitoring.session"))
        .collect();
    assert_eq!(
        sessions,
        [
            "sb.monitoring.session.started",
            "sb.monitoring.session.mode_changed",
            "sb.monitoring.session.mode_changed",
            "sb.monitoring.session.stopped",
        ]
    );
    assert!(
        subjects
            .iter()
            .any(|s| s == "sb.monitoring.rep.presence_changed")
    );
    Ok(())
}

#[tokio::test]
async fn the_org_policy_limits_modes_supervisors_and_tells_reps_when_asked() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let rep = User::new(org, Role::Closer);
    let ceo = User::new(org, Role::Ceo);
    let director = User::new(org, Role::Director);
    let manager = User::new(org, Role::Manager);
    rep_online(&monitoring, &rep).await?;
    let (_, defaults) = monitoring.get_json(&ceo, "/monitoring/settings").await?;
    assert_eq!(
        defaults,
        json!({"notifyRep": false, "allowCoach": true, "allowBarge": true, "maxSupervisorsPerRep": 2})
    );
    let (status, _) = monitoring
        .get_json(&manager, "/monitoring/settings")
        .await?;
    assert_eq!(status, 403);
    let (status, body) = monitoring
        .app
        .send(
            monitoring.app.client.put(monitoring.app.url("/monitoring/settings")).json(
                &json!({"notifyRep": true, "allowCoach": true, "allowBarge": false, "maxSupervisorsPerRep": 1}),
            ),
            Some(&monitoring.token(&ceo)),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let (status, bad) = monitoring
        .app
        .send(
            monitoring.app.client.put(monitoring.app.url("/monitoring/settings")).json(
                &json!({"notifyRep": true, "allowCoach": true, "allowBarge": false, "maxSupervisorsPerRep": 0}),
            ),
            Some(&monitoring.token(&ceo)),
        )
        .await?;
    assert_eq!(
        (status, bad["field"].as_str()),
        (400, Some("maxSupervisorsPerRep"))
    );

    let (status, started) = monitoring
        .post_json(&ceo, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!(status, 201, "{started}");
    // notifyRep: the listener is visible, and the rep is told.
    let claims = livekit_api::access_token::TokenVerifier::with_api_key(
        &monitoring.livekit.api_key,
        &monitoring.livekit.api_secret,
    )
    .verify(started["participantToken"].as_str().unwrap_or_default())?;
    assert!(!claims.video.hidden && claims.video.can_publish == Some(false));
    let (_, own) = monitoring.get_json(&rep, "/monitoring/rep/status").await?;
    assert_eq!(own, json!({"status": "LISTENED", "listened": true}));
    // One supervisor at a time.
    let (status, body) = monitoring
        .post_json(&director, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("too_many_supervisors"))
    );
    let id = started["session"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, body) = monitoring
        .post_json(
            &ceo,
            &format!("/monitoring/sessions/{id}/mode"),
            json!({"mode": "barge"}),
        )
        .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("mode_not_allowed"))
    );
    // A supervisor in scope who does not own the session cannot drive it.
    let (status, body) = monitoring
        .post_empty(&director, &format!("/monitoring/sessions/{id}/pause"))
        .await?;
    assert_eq!(status, 200, "leaders may act on the org's sessions: {body}");
    let other_manager = User::new(org, Role::Manager);
    let (status, _) = monitoring
        .post_empty(&other_manager, &format!("/monitoring/sessions/{id}/stop"))
        .await?;
    assert_eq!(
        status, 404,
        "a manager without the rep in scope does not see the session"
    );
    Ok(())
}

#[tokio::test]
async fn offline_reps_expired_tokens_and_livekit_outages() -> Result {
    let monitoring = TestMonitoring::spawn_with(|config| {
        config.supervisor_token_ttl = std::time::Duration::from_secs(1);
    })
    .await?;
    let org = Uuid::now_v7();
    let rep = User::new(org, Role::Closer);
    let ceo = User::new(org, Role::Ceo);
    // Known but not connected: 409.
    monitoring
        .post_empty(&rep, "/monitoring/rep/session")
        .await?;
    let (status, body) = monitoring
        .post_json(&ceo, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    assert_eq!((status, body["code"].as_str()), (409, Some("rep_offline")));
    let (status, _) = monitoring
        .post_json(
            &ceo,
            "/monitoring/sessions",
            json!({"repId": Uuid::now_v7()}),
        )
        .await?;
    assert_eq!(status, 404);
    let (status, body) = monitoring
        .post_json(&ceo, "/monitoring/sessions", json!({"repId": "nope"}))
        .await?;
    assert_eq!((status, body["field"].as_str()), (400, Some("repId")));

    let room = rep_online(&monitoring, &rep).await?;
    let (_, started) = monitoring
        .post_json(&ceo, "/monitoring/sessions", json!({"repId": rep.id}))
        .await?;
    let id = started["session"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    monitoring
        .livekit
        .join(&room, &format!("sup_{}", ceo.id), "CEO");
    monitoring
        .livekit
        .fail("UpdateParticipant", "unavailable", 1);
    let (status, body) = monitoring
        .post_json(
            &ceo,
            &format!("/monitoring/sessions/{id}/mode"),
            json!({"mode": "coach"}),
        )
        .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("livekit_unavailable"))
    );
    let (_, session) = monitoring
        .get_json(&ceo, &format!("/monitoring/sessions/{id}"))
        .await?;
    assert_eq!(session["mode"], "listen", "nothing changed");

    // The token expires unrenewed: the job stops the session.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let state = monitoring.state().await?;
    let report = sb_monitoring::reconcile_once(&state).await?;
    assert_eq!(report.sessions_expired, 1, "{report:?}");
    let (_, session) = monitoring
        .get_json(&ceo, &format!("/monitoring/sessions/{id}"))
        .await?;
    assert_eq!(
        (session["status"].as_str(), session["stopReason"].as_str()),
        (Some("STOPPED"), Some("token_expired"))
    );
    let (_, reps) = monitoring.get_json(&ceo, "/monitoring/reps").await?;
    assert_eq!(reps["items"][0]["status"], "ONLINE");
    let _: &Value = &reps;
    Ok(())
}

#[tokio::test]
async fn settings_take_only_a_json_body() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let ceo = User::new(Uuid::now_v7(), Role::Ceo);
    let body = json!({"notifyRep": true, "allowCoach": true, "allowBarge": false, "maxSupervisorsPerRep": 1})
        .to_string();
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let (status, answer) = monitoring
            .app
            .send(
                monitoring
                    .app
                    .client
                    .put(monitoring.app.url("/monitoring/settings"))
                    .header("Content-Type", content_type)
                    .body(body.clone()),
                Some(&monitoring.token(&ceo)),
            )
            .await?;
        assert_eq!(status, 415, "{content_type}: {answer}");
        assert_eq!(answer["code"], "unsupported_media_type", "{answer}");
    }
    let (_, settings) = monitoring.get_json(&ceo, "/monitoring/settings").await?;
    assert_eq!(settings["notifyRep"], false, "nothing was changed");
    Ok(())
}

/// Every list route takes `page` and `pageSize` and answers the one envelope of
/// `sb_platform::pagination`; a bad page size is a 400 naming the parameter. A manager's page
/// and total count only the sessions in their scope.
#[tokio::test]
async fn every_list_route_pages_the_same_way() -> Result {
    let monitoring = TestMonitoring::spawn().await?;
    let org = Uuid::now_v7();
    let team = Uuid::now_v7();
    let ceo = User::new(org, Role::Ceo);
    let manager = User::new(org, Role::Manager).in_team(team);
    let rep_in_team = User::new(org, Role::Closer).in_team(team);
    let rep_out_of_team = User::new(org, Role::Setter).in_team(Uuid::now_v7());
    let mut sessions = Vec::new();
    for rep in [&rep_in_team, &rep_out_of_team] {
        rep_online(&monitoring, rep).await?;
        let (status, body) = monitoring
            .post_json(&ceo, "/monitoring/sessions", json!({"repId": rep.id}))
            .await?;
        assert_eq!(status, 201, "{body}");
        sessions.push(
            body["session"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }

    for route in [
        "/monitoring/reps",
        "/monitoring/sessions",
        "/monitoring/audit",
    ] {
        let (status, page) = monitoring.get_json(&ceo, route).await?;
        assert_eq!(status, 200, "{route}: {page}");
        let keys: Vec<&str> = page
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys().map(String::as_str))
            .collect();
        assert_eq!(keys, sb_platform::pagination::ENVELOPE, "{route}: {page}");
        assert_eq!((&page["page"], &page["pageSize"]), (&json!(1), &json!(50)));
        assert_eq!(page["total"], 2, "{route}: {page}");
        for (query, field) in [
            ("pageSize=0", "pageSize"),
            ("pageSize=101", "pageSize"),
            ("pageSize=ten", "pageSize"),
            ("page=0", "page"),
        ] {
            let (status, answer) = monitoring
                .get_json(&ceo, &format!("{route}?{query}"))
                .await?;
            assert_eq!(status, 400, "{route}?{query}: {answer}");
            assert_eq!(answer["code"], "invalid_field", "{route}?{query}: {answer}");
            assert_eq!(answer["field"], field, "{route}?{query}: {answer}");
        }
    }
    // Newest first, one per page.
    let (_, second) = monitoring
        .get_json(&ceo, "/monitoring/sessions?pageSize=1&page=2")
        .await?;
    assert_eq!(
        second["items"].as_array().map(Vec::len),
        Some(1),
        "{second}"
    );
    assert_eq!(second["items"][0]["id"], sessions[0].as_str(), "{second}");
    // The manager's scope is applied before the page is cut, so the total is theirs.
    for route in ["/monitoring/reps", "/monitoring/sessions"] {
        let (status, page) = monitoring.get_json(&manager, route).await?;
        assert_eq!(status, 200, "{route}: {page}");
        assert_eq!(page["total"], 1, "{route}: {page}");
        assert_eq!(
            page["items"].as_array().map(Vec::len),
            Some(1),
            "{route}: {page}"
        );
    }
    Ok(())
}
