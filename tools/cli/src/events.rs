//! `switchboard events tail`: prints events live, decoded, one JSON line each.

use futures_util::StreamExt;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use sb_events::{Namespace, headers};
use sb_platform::config::NatsConfig;
use sb_platform::{Env, ProcessEnv};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print events as they are published, decoded (default: every `sb.>` and `crm.>` subject).
    Tail(TailArgs),
}

#[derive(clap::Args)]
pub struct TailArgs {
    /// Subjects to watch, wildcards allowed (e.g. `sb.video.>`).
    subjects: Vec<String>,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<usize>,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Tail(args) => tail(args).await,
    }
}

/// Renders payloads in protobuf's JSON mapping, read from the contracts' descriptor set: enums by
/// name (`PHONE_CALL_STATUS_COMPLETED`, not `5`), unset and default fields left out. Field names
/// stay as in the `.proto` (`org_id`) and 64-bit integers stay numbers (millisecond timestamps),
/// so the lines read like the contracts and `jq` compares them as numbers.
struct Renderer {
    pool: DescriptorPool,
    options: SerializeOptions,
}

impl Renderer {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            pool: DescriptorPool::decode(sb_events::FILE_DESCRIPTOR_SET)?,
            options: SerializeOptions::new()
                .skip_default_fields(true)
                .use_enum_numbers(false)
                .use_proto_field_name(true)
                .stringify_64_bit_integers(false),
        })
    }

    /// The payload of `event_type` (its fully-qualified message name) as JSON.
    fn render(&self, event_type: &str, payload: &[u8]) -> serde_json::Value {
        let Some(descriptor) = self.pool.get_message_by_name(event_type) else {
            return serde_json::json!({ "unknown_type_bytes": payload.len() });
        };
        DynamicMessage::decode(descriptor, payload)
            .map_err(|error| error.to_string())
            .and_then(|message| {
                message
                    .serialize_with_options(serde_json::value::Serializer, &self.options)
                    .map_err(|error| error.to_string())
            })
            .unwrap_or_else(|error| serde_json::json!({ "undecodable": error }))
    }
}

async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let renderer = Renderer::new()?;
    let env = Env::new(&ProcessEnv);
    let ns = Namespace::from_env(&env)?;
    let client = sb_platform::nats::connect(&NatsConfig::from_env(&env)?, "events-tail").await?;
    let subjects = if args.subjects.is_empty() {
        vec!["sb.>".to_owned(), "crm.>".to_owned()]
    } else {
        args.subjects
    };
    let mut streams = Vec::new();
    for subject in &subjects {
        streams.push(client.subscribe(ns.subject(subject)).await?);
    }
    client.flush().await?;
    eprintln!("watching {} (Ctrl-C to stop)", subjects.join(", "));
    let mut merged = futures_util::stream::select_all(streams);
    let mut printed = 0;
    loop {
        let message = tokio::select! {
            () = sb_platform::shutdown::signal() => break,
            message = merged.next() => match message { Some(m) => m, None => break },
        };
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let event_type = header(headers::EVENT_TYPE);
        let event = renderer.render(&event_type, &message.payload);
        let line = serde_json::json!({
            "subject": ns.strip(message.subject.as_str()),
            "type": event_type,
            "id": header(headers::MSG_ID),
            "org": header(headers::ORG_ID),
            "traceparent": header(headers::TRACEPARENT),
            "event": event,
        });
        println!("{line}");
        printed += 1;
        if args.count.is_some_and(|count| printed >= count) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost_reflect::prost::Message;
    use sb_events::Event;
    use sb_events::proto::{CallDirection, PhoneCallCompleted, PhoneCallStatus};

    use super::Renderer;

    #[test]
    fn enums_print_by_name_and_unset_fields_are_left_out() -> anyhow::Result<()> {
        let event = PhoneCallCompleted {
            call_id: "0190a000-0000-7000-8000-0000000000aa".to_owned(),
            org_id: "0190a000-0000-7000-8000-000000000001".to_owned(),
            direction: CallDirection::Inbound.into(),
            status: PhoneCallStatus::Completed.into(),
            duration_seconds: 42,
            ended_at_unix_ms: 1_767_225_600_000,
            ..Default::default()
        };
        let rendered = Renderer::new()?.render(PhoneCallCompleted::TYPE, &event.encode_to_vec());
        assert_eq!(
            rendered,
            serde_json::json!({
                "call_id": "0190a000-0000-7000-8000-0000000000aa",
                "org_id": "0190a000-0000-7000-8000-000000000001",
                "direction": "CALL_DIRECTION_INBOUND",
                "status": "PHONE_CALL_STATUS_COMPLETED",
                "duration_seconds": 42,
                "ended_at_unix_ms": 1_767_225_600_000_i64,
            })
        );
        Ok(())
    }

    #[test]
    fn unknown_and_undecodable_payloads_say_so() -> anyhow::Result<()> {
        let renderer = Renderer::new()?;
        assert_eq!(
            renderer.render("switchboard.events.v1.Nope", b"abc"),
            serde_json::json!({ "unknown_type_bytes": 3 })
        );
        let broken = renderer.render(PhoneCallCompleted::TYPE, &[0xff, 0xff]);
        assert!(broken["undecodable"].is_string(), "{broken}");
        Ok(())
    }
}
