//! `switchboard telephony simulate …`: posts Twilio's voice webhooks, signed the way Twilio signs
//! them, to a running telephony service, so inbound calls, status changes and recordings can be
//! played locally without exposing the service to Twilio (the seed's ngrok step).

use std::time::Duration;

use clap::Subcommand;
use sb_telephony::config::{DEV_AUTH_TOKEN, parse_public_base_url};
use sb_twilio::signature;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum Command {
    /// Post signed Twilio voice webhooks to a running telephony service.
    #[command(subcommand)]
    Simulate(Simulate),
}

#[derive(clap::Args)]
pub struct Target {
    /// The service's public URL, as in its PUBLIC_BASE_URL: what the signature covers.
    #[arg(long, env = "PUBLIC_BASE_URL", default_value = "http://127.0.0.1:3005")]
    base_url: String,
    /// Where to send the request, when not the public URL (e.g. the service behind a gateway).
    #[arg(long)]
    target: Option<String>,
    /// The Twilio auth token the service checks signatures with.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", default_value = DEV_AUTH_TOKEN, hide_default_value = true, hide_env_values = true)]
    auth_token: String,
    /// The account sid Twilio would send.
    #[arg(long, env = "TWILIO_ACCOUNT_SID", default_value = sb_telephony::config::DEV_ACCOUNT_SID)]
    account_sid: String,
}

#[derive(Subcommand)]
pub enum Simulate {
    /// A call reaches one of the org's numbers (`POST /webhook/voice`); prints the TwiML.
    Inbound {
        /// The caller, E.164.
        #[arg(long)]
        from: String,
        /// The org's number that is called, E.164.
        #[arg(long)]
        to: String,
        /// CallSid to use (default: a new one, printed).
        #[arg(long)]
        call_sid: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// A status callback (`POST /webhook/voice/status`).
    Status {
        #[arg(long)]
        call_sid: String,
        /// queued, initiated, ringing, in-progress, completed, busy, no-answer, failed, canceled.
        #[arg(long)]
        status: String,
        /// CallDuration in seconds (terminal statuses).
        #[arg(long)]
        duration: Option<u32>,
        /// Twilio's SequenceNumber.
        #[arg(long)]
        sequence: Option<u32>,
        /// The `callId` of a call placed by the API (its callbacks carry it).
        #[arg(long)]
        call_id: Option<Uuid>,
        #[command(flatten)]
        target: Target,
    },
    /// The `<Dial>` of an inbound call ended (`POST /webhook/voice/completed`): no-answer, busy
    /// or failed lead to voicemail.
    Dial {
        #[arg(long)]
        call_sid: String,
        /// completed, answered, busy, no-answer, failed, canceled.
        #[arg(long, default_value = "no-answer")]
        dial_status: String,
        /// DialCallDuration in seconds.
        #[arg(long, default_value_t = 0)]
        duration: u32,
        #[command(flatten)]
        target: Target,
    },
    /// A voicemail was recorded (the `<Record>` action), or with --status a recording status
    /// callback (`POST /webhook/voice/recording`).
    Recording {
        #[arg(long)]
        call_sid: String,
        /// RecordingSid to use (default: a new one).
        #[arg(long)]
        recording_sid: Option<String>,
        /// Length in seconds.
        #[arg(long, default_value_t = 10)]
        duration: u32,
        /// RecordingUrl.
        #[arg(long)]
        url: Option<String>,
        /// Send a status callback with this RecordingStatus (in-progress, completed, absent,
        /// failed) of a dual-channel call recording, instead of a voicemail.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

fn sid(prefix: &str) -> String {
    format!("{prefix}{}", Uuid::new_v4().simple())
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn post(target: &Target, path: &str, form: Vec<(String, String)>) -> anyhow::Result<()> {
    let base = parse_public_base_url(&target.base_url)?;
    let mut form = form;
    form.push(("AccountSid".to_owned(), target.account_sid.clone()));
    form.push(("ApiVersion".to_owned(), "2010-04-01".to_owned()));
    let signed_url = format!("{base}{path}");
    let signature = signature::sign(&target.auth_token, &signed_url, &form);
    let destination = match &target.target {
        Some(target) => format!("{}{path}", target.trim_end_matches('/')),
        None => signed_url.clone(),
    };
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let response = client
        .post(&destination)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(signature::HEADER, signature)
        .header(
            "User-Agent",
            "TwilioProxy/1.1 (switchboard telephony simulate)",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the telephony service at {destination}: {e}"))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await?;
    println!("POST {destination} → {status} {content_type}");
    println!("{text}");
    if !status.is_success() {
        anyhow::bail!("the service answered {status}");
    }
    Ok(())
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    let Command::Simulate(simulate) = command;
    match simulate {
        Simulate::Inbound {
            from,
            to,
            call_sid,
            target,
        } => {
            let call_sid = call_sid.unwrap_or_else(|| sid("CA"));
            println!("CallSid {call_sid}");
            let form = pairs(&[
                ("CallSid", &call_sid),
                ("CallStatus", "ringing"),
                ("Direction", "inbound"),
                ("From", &from),
                ("Caller", &from),
                ("To", &to),
                ("Called", &to),
            ]);
            post(&target, "/webhook/voice", form).await
        }
        Simulate::Status {
            call_sid,
            status,
            duration,
            sequence,
            call_id,
            target,
        } => {
            let timestamp = chrono::Utc::now()
                .format("%a, %d %b %Y %H:%M:%S +0000")
                .to_string();
            let mut form = pairs(&[
                ("CallSid", &call_sid),
                ("CallStatus", &status),
                ("Timestamp", &timestamp),
                ("CallbackSource", "call-progress-events"),
            ]);
            if let Some(duration) = duration {
                form.push(("CallDuration".to_owned(), duration.to_string()));
            }
            if let Some(sequence) = sequence {
                form.push(("SequenceNumber".to_owned(), sequence.to_string()));
            }
            let path = match call_id {
                Some(id) => format!("/webhook/voice/status?callId={id}"),
                None => "/webhook/voice/status".to_owned(),
            };
            post(&target, &path, form).await
        }
        Simulate::Dial {
            call_sid,
            dial_status,
            duration,
            target,
        } => {
            let form = pairs(&[
                ("CallSid", &call_sid),
                ("DialCallSid", &sid("CA")),
                ("DialCallStatus", &dial_status),
                ("DialCallDuration", &duration.to_string()),
            ]);
            post(&target, "/webhook/voice/completed", form).await
        }
        Simulate::Recording {
            call_sid,
            recording_sid,
            duration,
            url,
            status,
            target,
        } => {
            let recording_sid = recording_sid.unwrap_or_else(|| sid("RE"));
            let url = url.unwrap_or_else(|| {
                format!(
                    "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{recording_sid}",
                    target.account_sid
                )
            });
            println!("RecordingSid {recording_sid}");
            let mut form = pairs(&[
                ("CallSid", &call_sid),
                ("RecordingSid", &recording_sid),
                ("RecordingUrl", &url),
                ("RecordingDuration", &duration.to_string()),
            ]);
            if let Some(status) = status {
                form.extend(pairs(&[
                    ("RecordingStatus", &status),
                    ("RecordingSource", "DialVerb"),
                    ("RecordingChannels", "2"),
                ]));
            }
            post(&target, "/webhook/voice/recording", form).await
        }
    }
}
