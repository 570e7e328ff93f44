//! Guest links, the lobby and host controls through the HTTP API: the guest's whole path from
//! link to LiveKit token, refused links, tenant and role rules, limits, and LiveKit failures.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{TestAppointment, TestVideo, User};
use livekit_api::access_token::TokenVerifier;
use sb_auth::{GuestLinks, OrgId, Role};
use sb_livekit::Preset;
use sb_testkit::Result;
use serde_json::{Value, json};
use uuid::Uuid;

/// A running service with one appointment whose host has joined (which creates the call).
struct Setup {
    video: TestVideo,
    org: Uuid,
    host: User,
    appointment: TestAppointment,
    call: Uuid,
    room: String,
    /// The device secret each guest's first join answered, as the guest's page keeps it.
    devices: std::sync::Mutex<std::collections::HashMap<Uuid, String>>,
}

async fn setup() -> Result<Setup> {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    let appointment = TestAppointment::new(org, host.id);
    video.appointment(&appointment).await?;
    let (status, body) = video
        .post_empty(
            &host,
            &format!("/calls/appointments/{}/join", appointment.id),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let call = Uuid::parse_str(text(&body["callId"])?)?;
    let room = text(&body["roomName"])?.to_owned();
    Ok(Setup {
        video,
        org,
        host,
        appointment,
        call,
        room,
        devices: Default::default(),
    })
}

fn text(value: &Value) -> Result<&str> {
    Ok(value
        .as_str()
        .ok_or_else(|| format!("expected a string, got {value}"))?)
}

async fn answer(response: reqwest::Response) -> Result<(u16, Value)> {
    Ok(sb_testkit::Answer::read(response).await?.pair())
}

impl Setup {
    /// The host mints a guest link; returns its token.
    async fn link(&self) -> Result<String> {
        let (status, body) = self
            .video
            .post_empty(&self.host, &format!("/calls/{}/guest-links", self.call))
            .await?;
        assert_eq!(status, 201, "{body}");
        Ok(text(&body["token"])?.to_owned())
    }

    /// A guest signs a link of the test configuration's key, for any call, org and window.
    fn forged_link(
        &self,
        org: Uuid,
        call: Uuid,
        open: DateTime<Utc>,
        close: DateTime<Utc>,
    ) -> Result<String> {
        let links = GuestLinks::new(self.video.config.guest_links.secret.clone());
        Ok(links.mint(OrgId::from(org), call, open, close)?.0)
    }

    /// A new device (no JWT, no device secret) enters the lobby.
    async fn guest_join(&self, token: &str, name: &str) -> Result<(u16, Value)> {
        self.guest_join_from(token, name, None).await
    }

    /// A device enters the lobby, presenting the secret an earlier join gave it, if any; the
    /// secret a first join answers is remembered for [`Setup::poll`].
    async fn guest_join_from(
        &self,
        token: &str,
        name: &str,
        device_secret: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut body = json!({"token": token, "displayName": name});
        if let Some(secret) = device_secret {
            body["deviceSecret"] = json!(secret);
        }
        let (status, body) = answer(
            self.video
                .app
                .post("/calls/guest/join")
                .json(&body)
                .send()
                .await?,
        )
        .await?;
        if let (Some(guest), Some(secret)) =
            (body["guestId"].as_str(), body["deviceSecret"].as_str())
        {
            self.devices
                .lock()
                .map_err(|_| "poisoned")?
                .insert(Uuid::parse_str(guest)?, secret.to_owned());
        }
        Ok((status, body))
    }

    /// The device secret guest `guest`'s first join answered.
    fn device_of(&self, guest: Uuid) -> Result<String> {
        Ok(self
            .devices
            .lock()
            .map_err(|_| "poisoned")?
            .get(&guest)
            .cloned()
            .ok_or("no device secret for this guest")?)
    }

    /// The guest enters the lobby and must be accepted; returns their id.
    async fn waiting_guest(&self, token: &str, name: &str) -> Result<Uuid> {
        let (status, body) = self.guest_join(token, name).await?;
        assert_eq!(status, 202, "{body}");
        Ok(Uuid::parse_str(text(&body["guestId"])?)?)
    }

    /// The guest's own device (no JWT) polls their lobby place.
    async fn poll(&self, guest: Uuid, token: &str) -> Result<(u16, Value)> {
        let secret = self.device_of(guest)?;
        self.poll_from(guest, token, Some(&secret)).await
    }

    /// Any device polls lobby place `guest`, presenting `device_secret` if given.
    async fn poll_from(
        &self,
        guest: Uuid,
        token: &str,
        device_secret: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut request = self
            .video
            .app
            .get(&format!("/calls/guest/{guest}"))
            .query(&[("token", token)]);
        if let Some(secret) = device_secret {
            request = request.header("Guest-Device-Secret", secret);
        }
        answer(request.send().await?).await
    }

    async fn decide(&self, user: &User, guest: Uuid, decision: &str) -> Result<(u16, Value)> {
        self.video
            .post_empty(
                user,
                &format!("/calls/{}/lobby/{guest}/{decision}", self.call),
            )
            .await
    }

    async fn lobby(&self, user: &User) -> Result<(u16, Value)> {
        self.video
            .get_json(user, &format!("/calls/{}/lobby", self.call))
            .await
    }

    async fn remove(&self, user: &User, identity: &str) -> Result<(u16, Value)> {
        self.video
            .post_empty(
                user,
                &format!("/calls/{}/participants/{identity}/remove", self.call),
            )
            .await
    }

    async fn mute(&self, user: &User, identity: &str, body: Value) -> Result<(u16, Value)> {
        self.video
            .post_json(
                user,
                &format!("/calls/{}/participants/{identity}/mute", self.call),
                body,
            )
            .await
    }

    fn livekit_calls(&self, method: &str) -> usize {
        self.video
            .livekit
            .calls()
            .iter()
            .filter(|c| c.method == method && c.room == self.room)
            .count()
    }
}

#[tokio::test]
async fn a_guest_follows_a_link_waits_in_the_lobby_and_is_admitted_with_guest_grants() -> Result {
    let s = setup().await?;

    // The host mints a link valid from 30 minutes before the appointment to 2 hours after its
    // end (the test configuration), pointing at the frontend's guest page.
    let (status, link) = s
        .video
        .post_empty(&s.host, &format!("/calls/{}/guest-links", s.call))
        .await?;
    assert_eq!(status, 201, "{link}");
    let token = text(&link["token"])?.to_owned();
    assert_eq!(
        link["url"],
        format!("https://app.example.test/call/guest?token={token}")
    );
    let opens: DateTime<Utc> = text(&link["opensAt"])?.parse()?;
    let expires: DateTime<Utc> = text(&link["expiresAt"])?.parse()?;
    let scheduled = s.appointment.scheduled_at;
    assert_eq!(
        opens.timestamp(),
        (scheduled - Duration::minutes(30)).timestamp()
    );
    assert_eq!(
        expires.timestamp(),
        (scheduled + Duration::minutes(45) + Duration::hours(2)).timestamp()
    );

    // The guest enters the lobby, and their device is given a secret once; the same link with
    // that secret (a reloaded page) keeps the same place.
    let (status, joined) = s.guest_join(&token, "  Léa Lead  ").await?;
    assert_eq!(status, 202, "{joined}");
    assert_eq!(joined["status"], "WAITING");
    let guest = Uuid::parse_str(text(&joined["guestId"])?)?;
    assert_eq!(
        joined["pollUrl"],
        format!("/calls/guest/{guest}?token={token}")
    );
    let device = text(&joined["deviceSecret"])?.to_owned();
    let (status, again) = s.guest_join_from(&token, "Léa", Some(&device)).await?;
    assert_eq!((status, &again["guestId"]), (202, &joined["guestId"]));
    assert_eq!(again["deviceSecret"], Value::Null, "given once only");

    // Waiting: no token.
    let (status, waiting) = s.poll(guest, &token).await?;
    assert_eq!(status, 200, "{waiting}");
    assert_eq!(waiting, json!({"guestId": guest, "status": "WAITING"}));

    // The host sees them.
    let (status, lobby) = s.lobby(&s.host).await?;
    assert_eq!(status, 200, "{lobby}");
    let guests = lobby["items"].as_array().ok_or("items")?;
    assert_eq!(guests.len(), 1);
    assert_eq!(guests[0]["id"], guest.to_string());
    assert_eq!(guests[0]["displayName"], "Léa Lead");
    assert_eq!(guests[0]["status"], "WAITING");
    assert_eq!(guests[0]["decidedAt"], Value::Null);

    let (status, admitted) = s.decide(&s.host, guest, "admit").await?;
    assert_eq!(status, 200, "{admitted}");
    assert_eq!(admitted["status"], "ADMITTED");
    assert_eq!(admitted["decidedBy"], s.host.id.to_string());
    assert!(admitted["decidedAt"].is_string());

    // The next poll (through the URL the join gave, from the guest's device) carries a LiveKit
    // token for this room with exactly the guest preset's grants.
    let (status, polled) = answer(
        s.video
            .app
            .get(text(&joined["pollUrl"])?)
            .header("Guest-Device-Secret", &device)
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["status"], "ADMITTED");
    assert_eq!(polled["roomName"], s.room);
    assert_eq!(polled["livekitUrl"], s.video.livekit.url());
    assert_eq!(polled["recording"], false);
    let claims = TokenVerifier::with_api_key(&s.video.livekit.api_key, &s.video.livekit.api_secret)
        .verify(text(&polled["token"])?)?;
    assert_eq!(claims.video, Preset::Guest.grants(&s.room));
    assert_eq!(claims.sub, format!("g_{guest}"));
    assert_eq!(claims.name, "Léa Lead");

    // Admission made them a participant of the call: a guest, no user.
    let (status, call) = s
        .video
        .get_json(&s.host, &format!("/calls/{}", s.call))
        .await?;
    assert_eq!(status, 200, "{call}");
    let participants = call["participants"].as_array().ok_or("participants")?;
    let row = participants
        .iter()
        .find(|p| p["identity"] == format!("g_{guest}"))
        .ok_or("no guest participant")?;
    assert_eq!(row["isGuest"], true);
    assert_eq!(row["isHost"], false);
    assert_eq!(row["userId"], Value::Null);
    assert_eq!(row["role"], "GUEST");
    assert_eq!(row["displayName"], "Léa Lead");
    Ok(())
}

#[tokio::test]
async fn a_denied_guest_never_gets_a_token_and_decisions_are_final() -> Result {
    let s = setup().await?;
    let token = s.link().await?;
    let guest = s.waiting_guest(&token, "Denied Dan").await?;

    let (status, denied) = s.decide(&s.host, guest, "deny").await?;
    assert_eq!(status, 200, "{denied}");
    assert_eq!(denied["status"], "DENIED");
    let (status, polled) = s.poll(guest, &token).await?;
    assert_eq!(status, 200);
    assert_eq!(polled, json!({"guestId": guest, "status": "DENIED"}));
    // Rejoining from the same device does not put them back in the queue.
    let (status, rejoined) = s
        .guest_join_from(&token, "Denied Dan", Some(&s.device_of(guest)?))
        .await?;
    assert_eq!((status, &rejoined["status"]), (202, &json!("DENIED")));

    // Denying again is a harmless retry that keeps the first decision's time; admitting now is
    // a conflict.
    let (status, again) = s.decide(&s.host, guest, "deny").await?;
    assert_eq!((status, &again["status"]), (200, &json!("DENIED")));
    assert_eq!(again["decidedAt"], denied["decidedAt"]);
    let (status, conflict) = s.decide(&s.host, guest, "admit").await?;
    assert_eq!(
        (status, &conflict["code"]),
        (409, &json!("already_decided"))
    );
    let (_, polled) = s.poll(guest, &token).await?;
    assert!(polled.get("token").is_none(), "{polled}");

    // The mirror case: admitted twice is fine, denied after admission is a conflict.
    let other = s.link().await?;
    let admitted = s.waiting_guest(&other, "Admitted Ann").await?;
    assert_eq!(s.decide(&s.host, admitted, "admit").await?.0, 200);
    let (status, again) = s.decide(&s.host, admitted, "admit").await?;
    assert_eq!((status, &again["status"]), (200, &json!("ADMITTED")));
    let (status, conflict) = s.decide(&s.host, admitted, "deny").await?;
    assert_eq!(
        (status, &conflict["code"]),
        (409, &json!("already_decided"))
    );

    // A guest of another call (or no guest at all) is not found through this call.
    let (status, _) = s.decide(&s.host, Uuid::now_v7(), "admit").await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn refused_links_answer_401_with_a_code_saying_why() -> Result {
    let s = setup().await?;
    let now = Utc::now();
    let good = s.link().await?;

    // The signature's first character changed (its last one may only carry padding bits).
    let (signed, signature) = good.rsplit_once('.').ok_or("not a JWT")?;
    let first = signature.chars().next().ok_or("empty signature")?;
    let swapped = if first == 'A' { 'B' } else { 'A' };
    let tampered = format!("{signed}.{swapped}{}", &signature[1..]);
    let other_key = GuestLinks::new("another-guest-link-secret-0123456789-xyz".to_owned().into())
        .mint(
            OrgId::from(s.org),
            s.call,
            now - Duration::minutes(5),
            now + Duration::hours(1),
        )?
        .0;
    let expired = s.forged_link(
        s.org,
        s.call,
        now - Duration::hours(3),
        now - Duration::hours(2),
    )?;
    let early = s.forged_link(
        s.org,
        s.call,
        now + Duration::hours(2),
        now + Duration::hours(3),
    )?;
    // A platform JWT is not a guest link, even for a user of the org.
    let platform = s.video.token(&s.host);

    for (token, code) in [
        (tampered.as_str(), "guest_link_invalid"),
        (other_key.as_str(), "guest_link_invalid"),
        (platform.as_str(), "guest_link_invalid"),
        ("not-a-token", "guest_link_invalid"),
        (expired.as_str(), "guest_link_expired"),
        (early.as_str(), "guest_link_not_yet_valid"),
    ] {
        let (status, body) = s.guest_join(token, "Eve").await?;
        assert_eq!((status, &body["code"]), (401, &json!(code)), "{body}");
        let (status, body) = s.poll_from(Uuid::now_v7(), token, None).await?;
        assert_eq!((status, &body["code"]), (401, &json!(code)), "{body}");
    }
    // Polling without a token is a refused link too.
    let (status, body) = answer(
        s.video
            .app
            .get(&format!("/calls/guest/{}", Uuid::now_v7()))
            .send()
            .await?,
    )
    .await?;
    assert_eq!((status, &body["code"]), (401, &json!("guest_link_invalid")));

    // Nothing reached the lobby.
    let (_, lobby) = s.lobby(&s.host).await?;
    assert_eq!(lobby["items"], json!([]));

    // A valid link reads only the lobby place it created: not another link's, not a
    // made-up one.
    let guest = s.waiting_guest(&good, "Gina").await?;
    let second = s.link().await?;
    let (status, _) = s.poll(guest, &second).await?;
    assert_eq!(status, 404);
    let (status, _) = s.poll_from(Uuid::now_v7(), &good, None).await?;
    assert_eq!(status, 404);

    // A well-signed link for a call that does not exist.
    let nowhere = s.forged_link(
        s.org,
        Uuid::now_v7(),
        now - Duration::minutes(5),
        now + Duration::hours(1),
    )?;
    let (status, _) = s.guest_join(&nowhere, "Nora").await?;
    assert_eq!(status, 404);

    // The display name is checked and named.
    for bad in ["   ", &"x".repeat(101), "a\u{7}b"] {
        let (status, body) = s.guest_join(&good, bad).await?;
        assert_eq!(
            (status, &body["field"]),
            (400, &json!("displayName")),
            "{body}"
        );
    }
    let (status, body) = answer(
        s.video
            .app
            .post("/calls/guest/join")
            .json(&json!({"token": good}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, &body["field"]),
        (400, &json!("displayName")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_link_of_one_org_never_reaches_a_call_of_another() -> Result {
    let s = setup().await?;
    // Org B's call, and a correctly signed link that claims org A but names B's call.
    let org_b = Uuid::now_v7();
    let host_b = User::new(org_b, Role::Closer);
    let appointment_b = TestAppointment::new(org_b, host_b.id);
    s.video.appointment(&appointment_b).await?;
    let (status, joined) = s
        .video
        .post_empty(
            &host_b,
            &format!("/calls/appointments/{}/join", appointment_b.id),
        )
        .await?;
    assert_eq!(status, 200, "{joined}");
    let call_b = Uuid::parse_str(text(&joined["callId"])?)?;
    let now = Utc::now();
    let crossed = s.forged_link(
        s.org,
        call_b,
        now - Duration::minutes(5),
        now + Duration::hours(1),
    )?;
    let (status, body) = s.guest_join(&crossed, "Mallory").await?;
    assert_eq!(status, 404, "{body}");

    // B's real guest cannot be read with A's link either.
    let (status, link_b) = s
        .video
        .post_empty(&host_b, &format!("/calls/{call_b}/guest-links"))
        .await?;
    assert_eq!(status, 201, "{link_b}");
    let guest_b = s
        .waiting_guest(text(&link_b["token"])?, "Bob's guest")
        .await?;
    let token_a = s.link().await?;
    let (status, _) = s.poll(guest_b, &token_a).await?;
    assert_eq!(status, 404);

    // Nor can A's host see or decide B's lobby.
    let (status, _) = s
        .video
        .get_json(&s.host, &format!("/calls/{call_b}/lobby"))
        .await?;
    assert_eq!(status, 404);
    let (status, _) = s
        .video
        .post_empty(&s.host, &format!("/calls/{call_b}/lobby/{guest_b}/admit"))
        .await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn only_the_host_or_a_leader_of_the_org_runs_the_lobby_and_the_controls() -> Result {
    let s = setup().await?;
    let token = s.link().await?;
    let guest = s.waiting_guest(&token, "Gus").await?;
    let identity = format!("g_{guest}");
    let colleague = User::new(s.org, Role::Closer);
    let setter = User::new(s.org, Role::Setter);
    let stranger = User::new(Uuid::now_v7(), Role::Ceo);

    for (user, expected) in [(&colleague, 403), (&setter, 403), (&stranger, 404)] {
        let who = format!("{:?}", user.role);
        let (status, body) = s
            .video
            .post_empty(user, &format!("/calls/{}/guest-links", s.call))
            .await?;
        assert_eq!(status, expected, "{who} mint: {body}");
        assert_eq!(s.lobby(user).await?.0, expected, "{who} lobby");
        assert_eq!(
            s.decide(user, guest, "admit").await?.0,
            expected,
            "{who} admit"
        );
        assert_eq!(
            s.decide(user, guest, "deny").await?.0,
            expected,
            "{who} deny"
        );
        assert_eq!(s.remove(user, &identity).await?.0, expected, "{who} remove");
        let (status, _) = s
            .mute(user, &identity, json!({"trackSid": "TR_abc"}))
            .await?;
        assert_eq!(status, expected, "{who} mute");
    }
    // Without a JWT, the host routes answer 401.
    let (status, _) = answer(
        s.video
            .app
            .post(&format!("/calls/{}/guest-links", s.call))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 401);
    // None of that touched the guest.
    let (_, polled) = s.poll(guest, &token).await?;
    assert_eq!(polled["status"], "WAITING");

    // A leader of the org may.
    let ceo = User::new(s.org, Role::Ceo);
    let (status, _) = s
        .video
        .post_empty(&ceo, &format!("/calls/{}/guest-links", s.call))
        .await?;
    assert_eq!(status, 201);
    let (status, admitted) = s.decide(&ceo, guest, "admit").await?;
    assert_eq!((status, &admitted["decidedBy"]), (200, &json!(ceo.id)));
    Ok(())
}

#[tokio::test]
async fn a_forwarded_link_brings_a_new_guest_never_the_admitted_ones_place() -> Result {
    let s = setup().await?;
    let token = s.link().await?;
    let lea = s.waiting_guest(&token, "Léa Lead").await?;
    assert_eq!(s.decide(&s.host, lea, "admit").await?.0, 200);

    // Léa forwards the link. The newcomer is not Léa: a new place, waiting, with its own
    // device secret, and no LiveKit token.
    let (status, newcomer) = s.guest_join(&token, "Léa Lead").await?;
    assert_eq!(status, 202, "{newcomer}");
    let other = Uuid::parse_str(text(&newcomer["guestId"])?)?;
    assert_ne!(other, lea);
    assert_eq!(newcomer["status"], "WAITING");
    assert!(newcomer.get("token").is_none(), "{newcomer}");
    assert_ne!(text(&newcomer["deviceSecret"])?, s.device_of(lea)?);
    // A made-up secret is no better than none.
    let (status, guess) = s
        .guest_join_from(&token, "Léa Lead", Some("not-her-secret"))
        .await?;
    assert_eq!((status, &guess["status"]), (202, &json!("WAITING")));
    assert_ne!(guess["guestId"], json!(lea));

    // Léa's place answers only her device, even to someone who learnt her guest id.
    let (status, body) = s.poll_from(lea, &token, None).await?;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s
        .poll_from(lea, &token, Some(text(&newcomer["deviceSecret"])?))
        .await?;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s.poll_from(lea, &token, Some(&"x".repeat(101))).await?;
    assert_eq!(
        (status, &body["field"]),
        (400, &json!("Guest-Device-Secret"))
    );
    let (status, polled) = s.poll(lea, &token).await?;
    assert_eq!((status, &polled["status"]), (200, &json!("ADMITTED")));
    let claims = TokenVerifier::with_api_key(&s.video.livekit.api_key, &s.video.livekit.api_secret)
        .verify(text(&polled["token"])?)?;
    assert_eq!(claims.sub, format!("g_{lea}"));

    // The host decides about the newcomer like any guest.
    let (_, lobby) = s.lobby(&s.host).await?;
    assert_eq!(lobby["items"].as_array().ok_or("items")?.len(), 3);

    // One link opens at most five places.
    for _ in 0..2 {
        assert_eq!(s.guest_join(&token, "Another").await?.0, 202);
    }
    let (status, body) = s.guest_join(&token, "One too many").await?;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("lobby_full")),
        "{body}"
    );
    // Léa's device still gets her place back.
    let (status, again) = s
        .guest_join_from(&token, "Léa", Some(&s.device_of(lea)?))
        .await?;
    assert_eq!((status, &again["guestId"]), (202, &json!(lea)));
    assert_eq!(again["status"], "ADMITTED");
    Ok(())
}

#[tokio::test]
async fn the_lobby_holds_at_most_twenty_waiting_guests() -> Result {
    let s = setup().await?;
    let mut first = None;
    for i in 0..20 {
        let token = s.link().await?;
        let guest = s.waiting_guest(&token, &format!("Guest {i}")).await?;
        first.get_or_insert((guest, token));
    }
    let (first, first_token) = first.ok_or("no guest")?;
    let extra = s.link().await?;
    let (status, body) = s.guest_join(&extra, "One too many").await?;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("lobby_full")),
        "{body}"
    );
    // A guest already in the lobby keeps their place when they reload.
    let (status, again) = s
        .guest_join_from(&first_token, "Guest 0", Some(&s.device_of(first)?))
        .await?;
    assert_eq!((status, &again["guestId"]), (202, &json!(first)));
    // A decision frees a seat.
    assert_eq!(s.decide(&s.host, first, "deny").await?.0, 200);
    let (status, body) = s.guest_join(&extra, "One too many").await?;
    assert_eq!(status, 202, "{body}");
    let (_, lobby) = s.lobby(&s.host).await?;
    let guests = lobby["items"].as_array().ok_or("items")?;
    assert_eq!(guests.len(), 21);
    // Oldest first.
    assert_eq!(guests[0]["displayName"], "Guest 0");
    assert_eq!(guests[20]["displayName"], "One too many");
    Ok(())
}

#[tokio::test]
async fn a_finished_call_takes_no_more_guests() -> Result {
    let s = setup().await?;
    let token = s.link().await?;
    let waiting = s.waiting_guest(&token, "Late Larry").await?;
    let (status, body) = s
        .video
        .post_empty(&s.host, &format!("/calls/{}/stop", s.call))
        .await?;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("COMPLETED")),
        "{body}"
    );

    let (status, body) = s
        .video
        .post_empty(&s.host, &format!("/calls/{}/guest-links", s.call))
        .await?;
    assert_eq!((status, &body["code"]), (409, &json!("call_finished")));
    let (status, body) = s.guest_join(&token, "Late Larry").await?;
    assert_eq!((status, &body["code"]), (409, &json!("call_finished")));
    let (status, body) = s.poll(waiting, &token).await?;
    assert_eq!((status, &body["code"]), (409, &json!("call_finished")));
    let (status, body) = s.decide(&s.host, waiting, "admit").await?;
    assert_eq!((status, &body["code"]), (409, &json!("call_finished")));
    Ok(())
}

#[tokio::test]
async fn the_host_removes_a_guest_who_cannot_come_back_for_a_new_token() -> Result {
    let s = setup().await?;
    let token = s.link().await?;
    let guest = s.waiting_guest(&token, "Rude Rita").await?;
    assert_eq!(s.decide(&s.host, guest, "admit").await?.0, 200);
    let identity = format!("g_{guest}");
    s.video.livekit.join(&s.room, &identity, "Rude Rita");

    let (status, body) = s.remove(&s.host, &identity).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"identity": identity, "removed": true, "denied": true})
    );
    assert_eq!(s.livekit_calls("RemoveParticipant"), 1);
    assert!(
        s.video
            .livekit
            .participants(&s.room)
            .iter()
            .all(|p| p.identity != identity)
    );
    let (status, polled) = s.poll(guest, &token).await?;
    assert_eq!(status, 200);
    assert_eq!(polled, json!({"guestId": guest, "status": "DENIED"}));
    let (_, lobby) = s.lobby(&s.host).await?;
    assert_eq!(lobby["items"][0]["status"], "DENIED");

    // Gone already: LiveKit's 404 is the participant's.
    let (status, body) = s.remove(&s.host, &identity).await?;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("participant_not_found"))
    );
    // An admitted guest who has not connected yet is denied all the same, and the answer says
    // so: not disconnected, denied.
    let other_token = s.link().await?;
    let other = s.waiting_guest(&other_token, "Never Connected").await?;
    assert_eq!(s.decide(&s.host, other, "admit").await?.0, 200);
    let (status, body) = s.remove(&s.host, &format!("g_{other}")).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"identity": format!("g_{other}"), "removed": false, "denied": true})
    );
    let (_, polled) = s.poll(other, &other_token).await?;
    assert_eq!(polled["status"], "DENIED");
    // Again: nothing left to do.
    let (status, body) = s.remove(&s.host, &format!("g_{other}")).await?;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("participant_not_found"))
    );

    // Platform users are removed the same way.
    let rep = User::new(s.org, Role::Ceo);
    let rep_identity = format!("u_{}", rep.id);
    s.video.livekit.join(&s.room, &rep_identity, "Someone");
    let (status, body) = s.remove(&s.host, &rep_identity).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"identity": rep_identity, "removed": true, "denied": false})
    );
    assert!(s.video.livekit.participants(&s.room).is_empty());

    for bad in ["alice", "u_not-a-uuid", "EG_123"] {
        let (status, body) = s.remove(&s.host, bad).await?;
        assert_eq!(
            (status, &body["field"]),
            (400, &json!("identity")),
            "{body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_host_mutes_and_unmutes_a_participants_track() -> Result {
    let s = setup().await?;
    let token = s.link().await?;
    let guest = s.waiting_guest(&token, "Loud Lou").await?;
    assert_eq!(s.decide(&s.host, guest, "admit").await?.0, 200);
    let identity = format!("g_{guest}");
    s.video.livekit.join(&s.room, &identity, "Loud Lou");
    let track = s
        .video
        .livekit
        .publish_audio(&s.room, &identity)
        .ok_or("no track")?;
    let muted_in_livekit = |s: &Setup| {
        s.video
            .livekit
            .participants(&s.room)
            .iter()
            .flat_map(|p| p.tracks.clone())
            .find(|t| t.sid == track)
            .map(|t| t.muted)
    };

    // `muted` defaults to true.
    let (status, body) = s
        .mute(&s.host, &identity, json!({"trackSid": track}))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"identity": identity, "trackSid": track, "muted": true})
    );
    assert_eq!(muted_in_livekit(&s), Some(true));
    assert_eq!(s.livekit_calls("MutePublishedTrack"), 1);

    let (status, body) = s
        .mute(
            &s.host,
            &identity,
            json!({"trackSid": track, "muted": false}),
        )
        .await?;
    assert_eq!((status, &body["muted"]), (200, &json!(false)), "{body}");
    assert_eq!(muted_in_livekit(&s), Some(false));

    let (status, body) = s
        .mute(&s.host, &identity, json!({"trackSid": "TR_unknown"}))
        .await?;
    assert_eq!((status, &body["code"]), (404, &json!("track_not_found")));
    let (status, body) = s
        .mute(&s.host, "nobody", json!({"trackSid": track}))
        .await?;
    assert_eq!((status, &body["field"]), (400, &json!("identity")));
    for bad in [json!({"trackSid": "x"}), json!({"trackSid": ""})] {
        let (status, body) = s.mute(&s.host, &identity, bad).await?;
        assert_eq!(
            (status, &body["field"]),
            (400, &json!("trackSid")),
            "{body}"
        );
    }
    let (status, _) = s.mute(&s.host, &identity, json!({})).await?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test]
async fn livekit_down_answers_503_and_changes_nothing() -> Result {
    let s = setup().await?;
    let token = s.link().await?;
    let guest = s.waiting_guest(&token, "Patient Pat").await?;
    assert_eq!(s.decide(&s.host, guest, "admit").await?.0, 200);
    let identity = format!("g_{guest}");
    s.video.livekit.join(&s.room, &identity, "Patient Pat");
    let track = s
        .video
        .livekit
        .publish_audio(&s.room, &identity)
        .ok_or("no track")?;

    s.video.livekit.fail("RemoveParticipant", "unavailable", 1);
    let (status, body) = s.remove(&s.host, &identity).await?;
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("livekit_unavailable")),
        "{body}"
    );
    // The guest is still admitted and still connected.
    let (_, polled) = s.poll(guest, &token).await?;
    assert_eq!(polled["status"], "ADMITTED");
    assert!(polled["token"].is_string());
    assert_eq!(s.video.livekit.participants(&s.room).len(), 1);

    s.video.livekit.fail("MutePublishedTrack", "unavailable", 1);
    let (status, body) = s
        .mute(&s.host, &identity, json!({"trackSid": track}))
        .await?;
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("livekit_unavailable")),
        "{body}"
    );

    // Once LiveKit is back, the same requests work.
    assert_eq!(
        s.mute(&s.host, &identity, json!({"trackSid": track}))
            .await?
            .0,
        200
    );
    assert_eq!(s.remove(&s.host, &identity).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn no_link_is_issued_once_the_appointments_window_has_closed() -> Result {
    let video = TestVideo::spawn().await?;
    let org = Uuid::now_v7();
    let host = User::new(org, Role::Closer);
    // The test configuration: links close 2 hours after the end; appointments last 45 minutes.
    for (started_ago, expected) in [(Duration::hours(4), 409), (Duration::minutes(150), 201)] {
        let mut appointment = TestAppointment::new(org, host.id);
        appointment.scheduled_at = Utc::now() - started_ago;
        video.appointment(&appointment).await?;
        let (status, joined) = video
            .post_empty(
                &host,
                &format!("/calls/appointments/{}/join", appointment.id),
            )
            .await?;
        assert_eq!(status, 200, "{joined}");
        let call = text(&joined["callId"])?;
        let (status, body) = video
            .post_empty(&host, &format!("/calls/{call}/guest-links"))
            .await?;
        assert_eq!(status, expected, "{body}");
        if expected == 409 {
            assert_eq!(body["code"], "appointment_window_over");
        } else {
            let expires: DateTime<Utc> = text(&body["expiresAt"])?.parse()?;
            assert!(expires > Utc::now(), "{body}");
        }
    }
    Ok(())
}
