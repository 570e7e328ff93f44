//! Room ids, statuses and their transitions, and ICE server credentials.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha1::Sha1;

use crate::config::IceConfig;

/// The seed's room id shape: `room_<unix ms>_<random>`.
pub fn new_room_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("room_{millis}_{}", &random[..9])
}

/// Seed 004's room status (`signaling_rooms.status`).
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
pub enum RoomStatus {
    Waiting,
    InProgress,
    Ended,
}

impl RoomStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "Waiting",
            Self::InProgress => "InProgress",
            Self::Ended => "Ended",
        }
    }

    pub fn proto(self) -> sb_events::proto::SignalingRoomStatus {
        use sb_events::proto::SignalingRoomStatus as P;
        match self {
            Self::Waiting => P::Waiting,
            Self::InProgress => P::InProgress,
            Self::Ended => P::Ended,
        }
    }

    /// Waiting → InProgress once both sides are present; InProgress → Ended once both have left.
    pub fn after_presence(self, practitioner: bool, patient: bool) -> Self {
        match self {
            Self::Waiting if practitioner && patient => Self::InProgress,
            Self::InProgress if !practitioner && !patient => Self::Ended,
            other => other,
        }
    }
}

impl std::str::FromStr for RoomStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Waiting, Self::InProgress, Self::Ended]
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("expected Waiting, InProgress or Ended, got {s:?}"))
    }
}

sb_db::text_enum!(RoomStatus);

/// Which side of the appointment a user is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Practitioner,
    Patient,
    /// Allowed by policy (a manager, an admin) but neither host nor guest.
    Observer,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Practitioner => "practitioner",
            Self::Patient => "patient",
            Self::Observer => "observer",
        }
    }
}

/// The ICE servers for `user`: the STUN list, and TURN with coturn REST credentials
/// (username `expiry:user`, password base64 HMAC-SHA1 of it with the shared secret).
pub fn ice_servers(config: &IceConfig, user: &str, now: SystemTime) -> Value {
    let mut servers = Vec::new();
    if !config.stun_urls.is_empty() {
        servers.push(json!({"urls": config.stun_urls}));
    }
    if let (Some(secret), false) = (&config.turn_secret, config.turn_urls.is_empty()) {
        let expiry = now
            .checked_add(config.turn_ttl)
            .unwrap_or(now)
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let username = format!("{expiry}:{user}");
        if let Some(credential) = turn_password(secret.expose_secret(), &username) {
            servers.push(json!({
                "urls": config.turn_urls,
                "username": username,
                "credential": credential,
            }));
        }
    }
    Value::Array(servers)
}

fn turn_password(secret: &str, username: &str) -> Option<String> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(username.as_bytes());
    Some(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_presence() {
        use RoomStatus::*;
        assert_eq!(Waiting.after_presence(true, false), Waiting);
        assert_eq!(Waiting.after_presence(true, true), InProgress);
        assert_eq!(InProgress.after_presence(false, true), InProgress);
        assert_eq!(InProgress.after_presence(false, false), Ended);
        assert_eq!(Ended.after_presence(true, true), Ended);
    }

    #[test]
    fn turn_credentials_follow_the_coturn_rest_scheme() {
        let config = IceConfig {
            stun_urls: vec!["stun:stun.example:3478".into()],
            turn_urls: vec!["turn:turn.example:3478".into()],
            turn_secret: Some("north".to_owned().into()),
            turn_ttl: Duration::from_secs(3600),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let servers = ice_servers(&config, "u1", now);
        assert_eq!(servers[0]["urls"], json!(["stun:stun.example:3478"]));
        assert_eq!(servers[1]["username"], json!("1003600:u1"));
        // echo -n "1003600:u1" | openssl dgst -sha1 -hmac north -binary | base64
        assert_eq!(
            servers[1]["credential"],
            json!("S4WBFqsDLCy5jP+mOkLu8c9qcvQ=")
        );
    }

    #[test]
    fn room_ids_have_the_seed_shape() {
        let id = new_room_id();
        assert!(id.starts_with("room_"));
        assert_eq!(id.split('_').count(), 3);
    }
}
