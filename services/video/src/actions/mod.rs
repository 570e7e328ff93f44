//! What the routes and the jobs do to calls: each function owns its transaction, calls LiveKit
//! where needed (never leaving a half-written change behind) and writes events to the outbox in
//! the same transaction as the change they announce.

pub mod access;
pub mod calls;
pub mod lobby;
pub mod meetings;
pub mod presence;
pub mod recording;
pub mod recording_files;
pub mod webhook;

use sb_livekit::protocol::WebhookEvent;

use crate::error::VideoError;
use crate::state::AppState;
use webhook::WebhookOutcome;

/// Webhooks about meeting rooms (`org_<orgId>_mtg_<id>`).
pub async fn meeting_webhook(
    state: &AppState,
    event: &WebhookEvent,
) -> Result<WebhookOutcome, VideoError> {
    meetings::apply_webhook(state, event).await
}
