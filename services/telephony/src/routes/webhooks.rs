//! Twilio's voice webhooks: public, authenticated by Twilio's signature only. TwiML answers are
//! `text/xml` (another content type is Twilio error 12300).

use actix_web::{HttpRequest, HttpResponse, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::actions::voice::{self, Answer};
use crate::error::TelephonyError;
use crate::routes::twilio_request::TwilioRequest;
use crate::state::AppState;

pub fn config(cfg: &mut ServiceConfig<'_>) {
    cfg.service(incoming)
        .service(completed)
        .service(outbound)
        .service(status)
        .service(recording)
        .service(transcription)
        .service(conference);
}

pub const TWIML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

fn twiml(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(TWIML_CONTENT_TYPE)
        .body(body)
}

/// Counts the webhook's outcome (a failure too) and answers its TwiML.
fn answer(
    state: &AppState,
    req: &HttpRequest,
    result: Result<Answer, TelephonyError>,
) -> Result<HttpResponse, TelephonyError> {
    match result {
        Ok(answer) => {
            state.metrics.webhook(req.path(), answer.outcome);
            Ok(twiml(answer.twiml))
        }
        Err(error) => {
            state.metrics.webhook(req.path(), "failed");
            Err(error)
        }
    }
}

/// `POST /webhook/voice`
#[utoipa::path(post, path = "/webhook/voice", tag = "webhooks",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Twilio's voice request (CallSid, From, To, CallStatus…), signed with `X-Twilio-Signature`"),
    responses(
        (status = 200, content_type = "text/xml", description = "TwiML: the number's greeting, then `<Dial>` ringing the owner's app (`<Client>`) and/or forward number; voicemail when the number rings nowhere; a polite message and `<Hangup/>` for a number no org has"),
        (status = 400, description = "No valid CallSid", content_type = "application/problem+json"),
        (status = 403, description = "Missing or bad signature: nothing is written", content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable: Twilio uses the number's fallback URL", content_type = "application/problem+json")))]
#[post("/webhook/voice")]
async fn incoming(
    state: web::Data<AppState>,
    req: HttpRequest,
    webhook: TwilioRequest,
) -> Result<HttpResponse, TelephonyError> {
    let result = voice::incoming(&state, &webhook.params).await;
    answer(&state, &req, result)
}

/// `POST /webhook/voice/completed`
#[utoipa::path(post, path = "/webhook/voice/completed", tag = "webhooks",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "The `<Dial>` action: CallSid, DialCallStatus, DialCallDuration"),
    responses(
        (status = 200, content_type = "text/xml", description = "Voicemail (`<Say>` + `<Record maxLength=\"60\">`) when nobody answered an inbound call (no-answer, busy, failed), else `<Hangup/>`"),
        (status = 403, description = "Missing or bad signature", content_type = "application/problem+json")))]
#[post("/webhook/voice/completed")]
async fn completed(
    state: web::Data<AppState>,
    req: HttpRequest,
    webhook: TwilioRequest,
) -> Result<HttpResponse, TelephonyError> {
    let result = voice::dial_completed(&state, &webhook.params).await;
    answer(&state, &req, result)
}

/// `POST /webhook/voice/outbound`
#[utoipa::path(post, path = "/webhook/voice/outbound", tag = "webhooks",
    params(("callId" = Option<uuid::Uuid>, Query, description = "The click-to-call's id (absent for calls placed from the app through the TwiML app)")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "The caller's device answered (click-to-call), or the app placed a call (From `client:…`, To, optional CallerId)"),
    responses(
        (status = 200, content_type = "text/xml", description = "`<Dial callerId=from>` the destination, recorded on two channels when asked"),
        (status = 403, description = "Missing or bad signature", content_type = "application/problem+json")))]
#[post("/webhook/voice/outbound")]
async fn outbound(
    state: web::Data<AppState>,
    req: HttpRequest,
    webhook: TwilioRequest,
) -> Result<HttpResponse, TelephonyError> {
    let result = voice::outbound(&state, &webhook.params, webhook.call_id()).await;
    answer(&state, &req, result)
}

/// `POST /webhook/voice/status`
#[utoipa::path(post, path = "/webhook/voice/status", tag = "webhooks",
    params(("callId" = Option<uuid::Uuid>, Query, description = "Set on the callbacks of calls this service placed")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "A status callback: CallSid, CallStatus, SequenceNumber, Timestamp, CallDuration"),
    responses(
        (status = 200, content_type = "text/xml", description = "Applied (monotonically), stale, or about an unknown call (logged, counted): Twilio stops either way"),
        (status = 403, description = "Missing or bad signature: nothing is written", content_type = "application/problem+json")))]
#[post("/webhook/voice/status")]
async fn status(
    state: web::Data<AppState>,
    req: HttpRequest,
    webhook: TwilioRequest,
) -> Result<HttpResponse, TelephonyError> {
    let result = voice::status_callback(&state, &webhook.params, webhook.call_id())
        .await
        .map(|outcome| Answer {
            twiml: sb_twilio::twiml::empty(),
            outcome,
        });
    answer(&state, &req, result)
}

/// `POST /webhook/voice/recording`
#[utoipa::path(post, path = "/webhook/voice/recording", tag = "webhooks",
    params(("callId" = Option<uuid::Uuid>, Query, description = "Set on the recording callbacks of a call's conference (they carry no CallSid)")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "The voicemail `<Record>` action (RecordingSid, RecordingUrl, RecordingDuration), or a recording status callback (RecordingStatus, RecordingSource, RecordingChannels)"),
    responses(
        (status = 200, content_type = "text/xml", description = "`<Hangup/>` after a voicemail, an empty document for status callbacks"),
        (status = 403, description = "Missing or bad signature", content_type = "application/problem+json")))]
#[post("/webhook/voice/recording")]
async fn recording(
    state: web::Data<AppState>,
    req: HttpRequest,
    webhook: TwilioRequest,
) -> Result<HttpResponse, TelephonyError> {
    let result = voice::recording(&state, &webhook.params, webhook.call_id()).await;
    answer(&state, &req, result)
}

/// `POST /webhook/voice/transcription`
#[utoipa::path(post, path = "/webhook/voice/transcription", tag = "webhooks",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Twilio's transcription callback of a voicemail (`<Record transcribe>`): RecordingSid, TranscriptionStatus, TranscriptionText"),
    responses(
        (status = 200, content_type = "text/xml", description = "An empty document; the text is kept with the voicemail and announced once (`sb.telephony.voicemail.transcribed`)"),
        (status = 400, description = "No valid RecordingSid or TranscriptionStatus", content_type = "application/problem+json"),
        (status = 403, description = "Missing or bad signature: nothing is written", content_type = "application/problem+json")))]
#[post("/webhook/voice/transcription")]
async fn transcription(
    state: web::Data<AppState>,
    req: HttpRequest,
    webhook: TwilioRequest,
) -> Result<HttpResponse, TelephonyError> {
    let result = crate::actions::recordings::transcribed(&state, &webhook.params).await;
    answer(&state, &req, result)
}

/// `POST /webhook/voice/conference`
#[utoipa::path(post, path = "/webhook/voice/conference", tag = "webhooks",
    params(("callId" = Option<uuid::Uuid>, Query, description = "The call the conference bridges (its name `call_<id>` says it too)")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "A conference status callback (StatusCallbackEvent conference-start, conference-end, participant-join, participant-leave…; ConferenceSid, FriendlyName, CallSid, ParticipantLabel), or the call status callback of a leg the service added to the conference (CallSid, CallStatus, CallDuration)"),
    responses(
        (status = 200, content_type = "text/xml", description = "An empty document: applied (monotonically: a repeated or late callback changes nothing), stale, or about an unknown call"),
        (status = 400, description = "No call named (callId or FriendlyName), or no valid ConferenceSid on a conference event", content_type = "application/problem+json"),
        (status = 403, description = "Missing or bad signature: nothing is written", content_type = "application/problem+json")))]
#[post("/webhook/voice/conference")]
async fn conference(
    state: web::Data<AppState>,
    req: HttpRequest,
    webhook: TwilioRequest,
) -> Result<HttpResponse, TelephonyError> {
    let result = crate::actions::conference::callback(&state, &webhook.params, webhook.call_id())
        .await
        .map(|outcome| Answer {
            twiml: sb_twilio::twiml::empty(),
            outcome,
        });
    answer(&state, &req, result)
}
