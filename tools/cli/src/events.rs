//! `switchboard events tail`: prints events live, decoded, one JSON line each.

use futures_util::StreamExt;
use sb_events::{Namespace, decode_json, headers};
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

async fn tail(args: TailArgs) -> anyhow::Result<()> {
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
        let event = match decode_json(&event_type, &message.payload) {
            Some(Ok(value)) => value,
            Some(Err(error)) => serde_json::json!({ "undecodable": error }),
            None => serde_json::json!({ "unknown_type_bytes": message.payload.len() }),
        };
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
