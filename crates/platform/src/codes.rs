//! Every error `code` a Switchboard API can answer, in one list: the contract clients switch on,
//! rendered into `docs/errors.md` (a test fails when the two differ).
//!
//! A [`Problem`](crate::Problem) only takes a [`Code`], and signaling's Socket.IO refusals only an
//! [`EventCode`], so an answer with a code missing here does not compile. Adding a code means adding
//! a row here, with the statuses it is answered with, what it means and which services answer it.

use std::fmt;

use actix_web::http::StatusCode;

/// Declares [`Code`]: each row is `Variant = "wire_code", [statuses], [services], "meaning"`.
/// The first status is the one [`Problem::new`](crate::Problem::new) answers with.
macro_rules! http_codes {
    ($($variant:ident = $code:literal, [$($status:ident),+], [$($service:ident),+], $meaning:literal;)+) => {
        /// A stable, machine-readable error code of an HTTP `application/problem+json` answer.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $(#[doc = $meaning] $variant,)+
        }

        impl Code {
            /// Every code, in the order of the table.
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];

            /// The code on the wire (`code` member, and the `type` URN's last part).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)+
                }
            }

            /// The HTTP statuses it is answered with, the usual one first.
            pub const fn statuses(self) -> &'static [StatusCode] {
                match self {
                    $(Code::$variant => &[$(StatusCode::$status),+],)+
                }
            }

            /// The usual HTTP status.
            pub const fn status(self) -> StatusCode {
                self.statuses()[0]
            }

            /// What it means, for the table.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)+
                }
            }

            /// The services that answer it (`all` for every one).
            pub const fn services(self) -> &'static [&'static str] {
                match self {
                    $(Code::$variant => &[$(stringify!($service)),+],)+
                }
            }
        }
    };
}

/// Declares [`EventCode`]: each row is `Variant = "wire_code", "meaning"`.
macro_rules! event_codes {
    ($($variant:ident = $code:literal, $meaning:literal;)+) => {
        /// The `code` of a refused Socket.IO event (signaling's `error` event and negative ack).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventCode {
            $(#[doc = $meaning] $variant,)+
        }

        impl EventCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [EventCode] = &[$(EventCode::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventCode::$variant => $code,)+
                }
            }

            pub const fn meaning(self) -> &'static str {
                match self {
                    $(EventCode::$variant => $meaning,)+
                }
            }
        }
    };
}

http_codes! {
    // Shared: the platform's parsers, router, auth and readiness.
    InvalidField = "invalid_field", [BAD_REQUEST], [video, telephony, monitoring],
        "A body or query value is malformed or missing; the `field` member names it (`body`, `query`, `displayName`, `participants[2]`, `pageSize`).";
    InvalidPathParameter = "invalid_path_parameter", [BAD_REQUEST], [all],
        "A path segment is not what the route takes (e.g. not a UUID).";
    MissingToken = "missing_token", [UNAUTHORIZED], [all],
        "No `Authorization: Bearer` token.";
    InvalidToken = "invalid_token", [UNAUTHORIZED], [all],
        "The bearer token is malformed, wrongly signed, or for another issuer or audience.";
    TokenExpired = "token_expired", [UNAUTHORIZED], [all],
        "The bearer token has expired.";
    Forbidden = "forbidden", [FORBIDDEN], [video, telephony, monitoring, signaling],
        "Authenticated, but the caller's role or scope does not allow this.";
    NotFound = "not_found", [NOT_FOUND], [all],
        "No such route or object, or it is another tenant's or outside the caller's scope (never revealed).";
    PayloadTooLarge = "payload_too_large", [PAYLOAD_TOO_LARGE], [video, telephony, monitoring],
        "The request body is larger than the route accepts.";
    UnsupportedMediaType = "unsupported_media_type", [UNSUPPORTED_MEDIA_TYPE], [video, telephony, monitoring],
        "The body's Content-Type is not the route's: `application/json` (or `application/*+json`) on JSON routes, a form on Twilio webhooks, `application/webhook+json` on LiveKit's.";
    Internal = "internal", [INTERNAL_SERVER_ERROR], [all],
        "An unexpected failure. Opaque: the cause is logged once with the request id.";
    DatabaseUnavailable = "database_unavailable", [SERVICE_UNAVAILABLE], [all],
        "The database (or, for monitoring's stream, NATS) is unreachable; retry after `Retry-After`.";
    NotReady = "not_ready", [SERVICE_UNAVAILABLE], [all],
        "`/readyz`: a dependency check failed; the `checks` member says which.";
    InvalidSignature = "invalid_signature", [FORBIDDEN], [video, telephony, monitoring],
        "A provider webhook (LiveKit, Twilio) whose signature is missing or does not match.";
    LivekitUnavailable = "livekit_unavailable", [SERVICE_UNAVAILABLE], [video, monitoring],
        "The media server is unreachable or overloaded; retry after `Retry-After`.";
    LivekitError = "livekit_error", [BAD_GATEWAY], [video, monitoring],
        "The media server refused the request.";

    // video
    ParticipantNotFound = "participant_not_found", [NOT_FOUND], [video],
        "The participant is not connected to the call's room.";
    TrackNotFound = "track_not_found", [NOT_FOUND], [video],
        "The participant has not published that track.";
    GuestLinkInvalid = "guest_link_invalid", [UNAUTHORIZED], [video],
        "The guest link is not valid (wrong signature, call or window).";
    GuestLinkExpired = "guest_link_expired", [UNAUTHORIZED, CONFLICT], [video],
        "401: the guest's link has expired. 409: admitting a guest whose link has expired.";
    GuestLinkNotYetValid = "guest_link_not_yet_valid", [UNAUTHORIZED], [video],
        "The guest link opens shortly before the appointment, not yet.";
    CallFinished = "call_finished", [CONFLICT], [video],
        "The call has already ended.";
    AppointmentCancelled = "appointment_cancelled", [CONFLICT], [video, signaling],
        "The appointment was cancelled.";
    StorageUnavailable = "storage_unavailable", [SERVICE_UNAVAILABLE], [video],
        "The recordings bucket does not answer or refused; nothing changed, retry after `Retry-After`.";
    AppointmentWindowEmpty = "appointment_window_empty", [CONFLICT], [video, signaling],
        "The appointment ends before a guest link for it would open.";
    AppointmentWindowOver = "appointment_window_over", [CONFLICT], [video, signaling],
        "The appointment's guest-link window has closed: a link for it would already be expired.";
    LobbyFull = "lobby_full", [CONFLICT], [video],
        "The lobby holds as many waiting guests as it may.";
    AlreadyDecided = "already_decided", [CONFLICT], [video],
        "The waiting guest was already admitted or refused.";
    NotInCall = "not_in_call", [CONFLICT], [video],
        "The caller has not joined the call.";
    RoomExists = "room_exists", [CONFLICT], [video],
        "A meeting with that room name already exists.";
    MeetingEnded = "meeting_ended", [CONFLICT], [video],
        "The meeting has ended.";

    // telephony
    InvalidPhoneNumber = "invalid_phone_number", [BAD_REQUEST], [telephony, monitoring],
        "A phone number is not E.164; the `field` member names it.";
    NumberNotOwned = "number_not_owned", [FORBIDDEN], [telephony],
        "`from` is not one of the caller's numbers.";
    NumberTaken = "number_taken", [CONFLICT], [telephony],
        "The number is already assigned.";
    ConcurrentUpdate = "concurrent_update", [CONFLICT], [telephony],
        "Another request created the same object at the same time; retry.";
    NoDevice = "no_device", [CONFLICT], [telephony],
        "The number rings neither an app nor a forward number: an admin must set one.";
    RecordingNotReady = "recording_not_ready", [CONFLICT], [telephony, video],
        "The recording is not complete yet (or failed): there is nothing to play or delete.";
    TooManySamples = "too_many_samples", [CONFLICT], [telephony],
        "The call already has as many quality samples as it may.";
    InvalidDestination = "invalid_destination", [UNPROCESSABLE_ENTITY], [telephony],
        "Twilio cannot call this number: not a valid phone number (Twilio 21211, 21217); `twilioCode` carries Twilio's code.";
    DestinationNotPermitted = "destination_not_permitted", [UNPROCESSABLE_ENTITY], [telephony],
        "The Twilio account may not call this country or number (geographic permissions, Twilio 21215, 21216).";
    CallerIdNotVerified = "caller_id_not_verified", [UNPROCESSABLE_ENTITY], [telephony],
        "Twilio does not accept `from` as the caller id (Twilio 21210, 21212).";
    DestinationUnverified = "destination_unverified", [UNPROCESSABLE_ENTITY], [telephony],
        "A trial Twilio account calls verified numbers only (Twilio 21219).";
    DestinationBlocked = "destination_blocked", [UNPROCESSABLE_ENTITY], [telephony],
        "The toll-fraud guard refuses this number: a premium-rate range (`TELEPHONY_BLOCKED_PREFIXES`) or one of the organisation's own numbers.";
    RateLimited = "rate_limited", [TOO_MANY_REQUESTS], [telephony],
        "Too many calls started in a short time; retry after `Retry-After`.";
    ProviderRejected = "provider_rejected", [BAD_GATEWAY], [telephony],
        "Twilio refused the request; `twilioCode` carries Twilio's code.";
    ProviderUnavailable = "provider_unavailable", [SERVICE_UNAVAILABLE], [telephony],
        "Twilio is unreachable, or busy (HTTP 429, 503) after retries within `TWILIO_TIMEOUT`; retry after `Retry-After`. The call is not marked FAILED.";
    VoiceTokensUnavailable = "voice_tokens_unavailable", [SERVICE_UNAVAILABLE], [telephony],
        "This deployment has no Twilio API key to mint voice access tokens.";

    // monitoring
    StreamTicketInvalid = "stream_ticket_invalid", [UNAUTHORIZED], [monitoring],
        "The live stream's ticket is unknown, already used or expired (tickets are single-use and short-lived): ask for a new one with `POST /monitoring/stream/tickets`.";
    NotYourSession = "not_your_session", [FORBIDDEN], [monitoring],
        "The monitoring session is another supervisor's.";
    ModeNotAllowed = "mode_not_allowed", [FORBIDDEN], [monitoring],
        "The organisation's settings do not allow this monitoring mode.";
    RepOffline = "rep_offline", [CONFLICT], [monitoring],
        "The rep is not connected with their microphone on.";
    TooManySupervisors = "too_many_supervisors", [CONFLICT], [monitoring],
        "As many supervisors as the organisation allows already monitor this rep.";
    SessionStopped = "session_stopped", [CONFLICT], [monitoring],
        "The monitoring session has stopped.";
    SessionNotActive = "session_not_active", [CONFLICT], [monitoring],
        "The monitoring session is not active.";
    InvalidTransition = "invalid_transition", [CONFLICT], [monitoring],
        "The session is not in the state the change needs, or changed meanwhile.";
    CallNotLive = "call_not_live", [CONFLICT], [monitoring],
        "The rep is on no call that can be supervised (a session asked for `target: call`).";
}

event_codes! {
    InvalidPayload = "invalid_payload",
        "The event's payload is not what it needs (not an object, `roomId` not a string, a field missing).";
    Unauthorized = "unauthorized",
        "The socket is not authenticated; at CONNECT (`connect_error`): no token, or not a valid one.";
    TokenExpired = "token_expired",
        "At CONNECT (`connect_error`): the token or guest link has expired.";
    RateLimited = "rate_limited",
        "The socket sent more events than its budget allows; it is disconnected after this notice.";
    UnsupportedPacket = "unsupported_packet",
        "A binary packet (or binary frame) or a packet of an unknown type: not handled, the socket stays.";
    InvalidPacket = "invalid_packet",
        "A packet that cannot be read (bad JSON, acknowledgement id or payload): the socket stays.";
    NotInRoom = "not_in_room",
        "The socket has not joined the room the event names.";
    NotFound = "not_found",
        "`join-room`: no such room, or one the caller may not see (as REST answers 404).";
    CallEnded = "call_ended",
        "`join-room`: the room's call has ended.";
    UnknownEvent = "unknown_event",
        "No such event.";
    Unavailable = "unavailable",
        "The database is unreachable; retry.";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for EventCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `docs/errors.md`, rendered from the two lists.
pub fn render_table() -> String {
    let mut out = String::from(
        "# Error codes\n\n\
         <!-- Generated from crates/platform/src/codes.rs: edit the list there, then run\n     \
         `UPDATE_ERRORS_MD=1 cargo test -p sb-platform --lib codes`. -->\n\n\
         Every error answer is `application/problem+json` (RFC 9457) with a stable `code` member;\n\
         clients switch on `code`, never on `detail`. See [API conventions](api-conventions.md#errors).\n\n\
         ## HTTP\n\n\
         | code | HTTP status | meaning | services |\n\
         |---|---|---|---|\n",
    );
    for code in Code::ALL {
        let statuses: Vec<String> = code
            .statuses()
            .iter()
            .map(|s| s.as_u16().to_string())
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            code.as_str(),
            statuses.join(", "),
            code.meaning(),
            code.services().join(", ")
        ));
    }
    out.push_str(
        "\n## Socket.IO events (signaling)\n\n\
         A refused event is answered with an `error` event `{event, code, message}` and, when the\n\
         client asked for an acknowledgement, the ack `{ok: false, code, error}`.\n\n\
         | code | meaning |\n\
         |---|---|\n",
    );
    for code in EventCode::ALL {
        out.push_str(&format!("| `{}` | {} |\n", code.as_str(), code.meaning()));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn docs_errors_md_is_the_rendered_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");
        let expected = render_table();
        if std::env::var_os("UPDATE_ERRORS_MD").is_some() {
            std::fs::write(path, &expected).unwrap();
        }
        let actual = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            actual == expected,
            "docs/errors.md differs from the codes in crates/platform/src/codes.rs; \
             rerun with UPDATE_ERRORS_MD=1, or replace it with:\n{expected}"
        );
    }

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for code in Code::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(EventCode::ALL.iter().map(|c| c.as_str()))
        {
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code} is not snake_case"
            );
            let http = Code::ALL.iter().filter(|c| c.as_str() == code).count();
            assert!(http <= 1, "{code} is listed twice");
            seen.insert(code);
        }
        for code in EventCode::ALL {
            assert_eq!(
                EventCode::ALL.iter().filter(|c| *c == code).count(),
                1,
                "{code}"
            );
        }
    }

    /// The `.rs` files under `dir`, with their text.
    fn sources(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    out.push((path, text));
                }
            }
        }
        out
    }

    /// Whether `text` names `path` (`Code::NotFound`) as a whole path, not inside a longer one
    /// (`EventCode::NotFound`, `Code::NotFoundYet`).
    fn names(text: &str, path: &str) -> bool {
        text.match_indices(path).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + path.len()..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    }

    /// The services column is what the sources say: a service that names a code is listed for it,
    /// a code only services name is named by each service listed, and every code is answered
    /// somewhere.
    #[test]
    fn the_services_column_matches_the_sources() {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let services = ["video", "telephony", "signaling", "monitoring"];
        let by_service: Vec<(&str, Vec<(std::path::PathBuf, String)>)> = services
            .iter()
            .map(|s| (*s, sources(&root.join("services").join(s).join("src"))))
            .collect();
        let crates: Vec<_> = sources(&root.join("crates"))
            .into_iter()
            .filter(|(path, _)| {
                !path.ends_with("codes.rs") && path.components().any(|c| c.as_os_str() == "src")
            })
            .collect();
        for code in Code::ALL {
            let path = format!("Code::{code:?}");
            let listed = code.services();
            let in_crates = crates.iter().any(|(_, text)| names(text, &path));
            let mut anywhere = in_crates;
            for (service, files) in &by_service {
                let uses = files.iter().any(|(_, text)| names(text, &path));
                anywhere |= uses;
                if uses && !listed.contains(&"all") {
                    assert!(
                        listed.contains(service),
                        "{service} answers {code} but is not listed for it"
                    );
                }
                if !in_crates && listed.contains(service) {
                    assert!(
                        uses,
                        "{code} is listed for {service}, which never answers it"
                    );
                }
            }
            assert!(anywhere, "{code} is listed but nothing answers it");
        }
        let signaling = &by_service[2].1;
        for code in EventCode::ALL {
            let path = format!("EventCode::{code:?}");
            assert!(
                signaling.iter().any(|(_, text)| names(text, &path)),
                "{code} is listed but signaling never sends it"
            );
        }
    }

    /// `conflict(Code::X, …)` answers 409 and `forbidden(Code::X, …)` 403: X must list that
    /// status (`Problem::with_status` only checks it in debug builds, on the paths tests take).
    #[test]
    fn codes_given_to_conflict_and_forbidden_list_their_status() {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let mut files = sources(&root.join("services"));
        files.extend(sources(&root.join("crates")));
        files.retain(|(path, _)| !path.ends_with("codes.rs"));
        for (call, status) in [
            ("conflict(", StatusCode::CONFLICT),
            ("forbidden(", StatusCode::FORBIDDEN),
        ] {
            for (path, text) in &files {
                for (at, _) in text.match_indices(call) {
                    let rest = text[at + call.len()..].trim_start();
                    let Some(rest) = rest.strip_prefix("Code::") else {
                        continue;
                    };
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    let code = Code::ALL
                        .iter()
                        .find(|c| format!("{c:?}") == name)
                        .unwrap_or_else(|| panic!("{}: unknown Code::{name}", path.display()));
                    assert!(
                        code.statuses().contains(&status),
                        "{}: {code} is answered with {status} but codes.rs does not list it",
                        path.display()
                    );
                }
            }
        }
    }

    #[test]
    fn every_code_names_known_services() {
        let known = ["all", "video", "telephony", "signaling", "monitoring"];
        for code in Code::ALL {
            for service in code.services() {
                assert!(known.contains(service), "{code}: unknown service {service}");
            }
        }
    }
}
