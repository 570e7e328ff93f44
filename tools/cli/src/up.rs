//! `switchboard up`: the whole stack in one process, for development.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use sb_db::{DatabaseConfig, PostgresProbe};
use sb_events::streams::{StreamSettings, ensure_streams};
use sb_events::{Domain, Namespace};
use sb_platform::config::{HttpConfig, LogConfig, NatsConfig};
use sb_platform::health::ReadinessProbe;
use sb_platform::nats::NatsProbe;
use sb_platform::{Application, Env, Metrics, ProcessEnv, Readiness, ServiceSpec};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Interface the services listen on.
    #[arg(long, env = "UP_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port of the stack overview (`/` lists the services; `/healthz`, `/readyz` for the stack).
    #[arg(long, env = "UP_PORT", default_value_t = 3100)]
    port: u16,
    /// Port of the signaling service.
    #[arg(long, env = "UP_SIGNALING_PORT", default_value_t = sb_signaling::config::DEFAULT_PORT)]
    signaling_port: u16,
    /// Port of the video service.
    #[arg(long, env = "UP_VIDEO_PORT", default_value_t = sb_video::config::DEFAULT_PORT)]
    video_port: u16,
    /// Port of the monitoring service.
    #[arg(long, env = "UP_MONITORING_PORT", default_value_t = sb_monitoring::config::DEFAULT_PORT)]
    monitoring_port: u16,
    /// Port of the telephony service.
    #[arg(long, env = "UP_TELEPHONY_PORT", default_value_t = sb_telephony::config::DEFAULT_PORT)]
    telephony_port: u16,
    /// Publish the sample CRM appointments once the stack is up (see `switchboard seed`).
    #[arg(long)]
    seed: bool,
}

/// A service of the stack as `up` prints it.
struct Listed {
    name: &'static str,
    port: u16,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let env = Env::new(&ProcessEnv);
    sb_platform::telemetry::init(&LogConfig::from_env(&env)?);
    let database = DatabaseConfig::from_env(&env)?;
    let nats = NatsConfig::from_env(&env)?;

    // Dependencies first, with messages that say what to do when they are missing.
    let created = sb_db::ensure_database_exists(&database).await?;
    let applied = sb_db::migrate::run_pending(&database).await?;
    let pool = sb_db::build_pool(&database)?;
    let client = sb_platform::nats::connect(&nats, "up").await?;
    let ns = Namespace::from_env(&env)?;
    let js = async_nats::jetstream::new(client.clone());
    ensure_streams(&js, &ns, &Domain::ALL, &StreamSettings::from_env(&env)?).await?;

    // Each service is built from the same environment as in production, on its own port, and
    // owns its background work (the video service projects CRM appointments, for instance).
    let mut video = sb_video::VideoConfig::from_env(&env)?;
    video.http.host = args.host.clone();
    video.http.port = args.video_port;
    video.database.migrate_on_start = false;
    let mut monitoring = sb_monitoring::MonitoringConfig::from_env(&env)?;
    monitoring.http.host = args.host.clone();
    monitoring.http.port = args.monitoring_port;
    monitoring.database.migrate_on_start = false;
    let mut telephony = sb_telephony::TelephonyConfig::from_env(&env)?;
    telephony.http.host = args.host.clone();
    telephony.http.port = args.telephony_port;
    telephony.database.migrate_on_start = false;
    let public_base_url: Option<String> = env.optional("PUBLIC_BASE_URL")?;
    if public_base_url.is_none() {
        // Webhooks (`switchboard telephony simulate`) are signed for the URL the service is on.
        telephony.public_base_url = format!(
            "http://{}:{}",
            display_host(&args.host),
            args.telephony_port
        );
    }
    let mut signaling = sb_signaling::SignalingConfig::from_env(&env)?;
    signaling.http.host = args.host.clone();
    signaling.http.port = args.signaling_port;
    signaling.database.migrate_on_start = false;
    let services: Vec<Application> = vec![
        sb_signaling::build(signaling).await?,
        sb_video::build(video).await?,
        sb_monitoring::build(monitoring).await?,
        sb_telephony::build(telephony).await?,
    ];

    let listed: Vec<Listed> = services
        .iter()
        .map(|s| Listed {
            name: s.name(),
            port: s.port(),
        })
        .collect();
    let overview = overview(&args, pool.clone(), client, &listed)?;
    let base = |port: u16| format!("http://{}:{port}", display_host(&args.host));
    // Running before the seed is published, so its consumers project it at once.
    let overview_port = overview.port();
    let mut stops = vec![overview.stop_token()];
    let mut running = vec![tokio::spawn(overview.run_until_stopped())];
    for service in services {
        stops.push(service.stop_token());
        running.push(tokio::spawn(service.run_until_stopped()));
    }

    println!();
    println!("Switchboard dev stack");
    println!(
        "  database  {}{}",
        database.redacted_url(),
        match (created, applied.len()) {
            (true, n) => format!(" (created, {n} migration(s) applied)"),
            (false, 0) => " (migrations up to date)".to_owned(),
            (false, n) => format!(" ({n} migration(s) applied)"),
        }
    );
    println!("  nats      {}", nats.redacted_url());
    println!();
    println!("  {:<12} {:<28} {:<34} metrics", "service", "url", "docs");
    for (name, port) in
        std::iter::once(("overview", overview_port)).chain(listed.iter().map(|s| (s.name, s.port)))
    {
        let url = base(port);
        println!(
            "  {name:<12} {url:<28} {:<34} {url}/metrics",
            format!("{url}/docs/")
        );
    }
    println!();
    println!("  The overview answers /healthz and /readyz for the stack (Postgres + NATS).");
    println!(
        "  Signaling demo (open it in two tabs with two tokens): {}/demo",
        base(args.signaling_port)
    );
    println!(
        "  Play a phone call: cargo run -p switchboard -- telephony simulate inbound --from +447911123456 --to <a number of yours>"
    );
    println!();
    if args.seed {
        let events = crate::seed::events(chrono::Utc::now());
        let published = crate::seed::publish_all(&js, &ns, &events).await?;
        crate::seed::print_summary(published, &ns);
        // The walk-through joins a seeded appointment's call right after `up` is ready.
        match wait_for_appointments(&pool, &events, Duration::from_secs(20)).await {
            Ok(count) => println!("  {count} sample appointments projected."),
            Err(error) => println!("  The sample appointments are not projected yet: {error}"),
        }
        println!();
    }
    print_dev_tokens(&env)?;
    println!("  Another token: cargo run -p switchboard -- token --role CEO [--user U] [--team T]");
    println!("  Watch events: cargo run -p switchboard -- events tail");
    println!("  Ctrl-C stops everything.");
    println!();

    sb_platform::shutdown::signal().await;
    for stop in stops {
        stop.cancel();
    }
    for task in running {
        task.await??;
    }
    println!("Switchboard dev stack stopped.");
    Ok(())
}

/// Waits until every appointment of the seed is in the `appointments` read model.
async fn wait_for_appointments(
    pool: &sb_db::DbPool,
    events: &[crate::seed::SeedEvent],
    limit: Duration,
) -> anyhow::Result<usize> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use sb_db::schema::appointments;

    let mut ids: Vec<uuid::Uuid> = events
        .iter()
        .filter_map(crate::seed::SeedEvent::appointment_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let expected = i64::try_from(ids.len())?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut conn = pool.get().await?;
        let found: i64 = appointments::table
            .filter(appointments::id.eq_any(&ids))
            .count()
            .get_result(&mut conn)
            .await?;
        if found >= expected {
            return Ok(ids.len());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{found} of {expected} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn display_host(host: &str) -> &str {
    match host {
        "0.0.0.0" | "::" => "127.0.0.1",
        other => other,
    }
}

/// The stack's own small HTTP app: lists the services and reports the stack's health.
fn overview(
    args: &Args,
    pool: sb_db::DbPool,
    client: sb_platform::nats::Client,
    listed: &[Listed],
) -> anyhow::Result<Application> {
    let probes: Vec<Arc<dyn ReadinessProbe>> = vec![
        Arc::new(PostgresProbe::new(pool)),
        Arc::new(NatsProbe::new(client)),
    ];
    let host = display_host(&args.host).to_owned();
    let index = json!({
        "stack": "switchboard",
        "services": listed.iter().map(|s| json!({
            "name": s.name,
            "url": format!("http://{host}:{}", s.port),
            "docs": format!("http://{host}:{}/docs/", s.port),
            "metrics": format!("http://{host}:{}/metrics", s.port),
        })).collect::<Vec<_>>(),
    });
    let spec = ServiceSpec {
        name: "switchboard",
        http: HttpConfig {
            host: args.host.clone(),
            port: args.port,
            shutdown_timeout: Duration::from_secs(5),
            json_limit_bytes: 16 * 1024,
            workers: 1,
            trusted_proxies: 0,
        },
        metrics: Metrics::new("switchboard")?,
        readiness: Readiness::new("switchboard", probes),
        openapi: utoipa::openapi::OpenApiBuilder::new()
            .info(
                utoipa::openapi::InfoBuilder::new()
                    .title("Switchboard dev stack")
                    .version(env!("CARGO_PKG_VERSION"))
                    .build(),
            )
            .build(),
    };
    let index = web::Data::new(index);
    Ok(Application::build(spec, move |cfg| {
        cfg.app_data(index.clone());
        cfg.route(
            "/",
            web::get().to(|index: web::Data<serde_json::Value>| async move {
                HttpResponse::Ok().json(index.get_ref())
            }),
        );
    })?)
}

/// One 12-hour token per role of the seeded org (the users `switchboard seed` prints), so a
/// newcomer can call an API at once. Development only: the tokens are signed with JWT_SECRET.
fn print_dev_tokens(env: &Env<'_>) -> anyhow::Result<()> {
    let environment = LogConfig::from_env(env)?.environment;
    if environment == sb_platform::config::Environment::Production {
        return Ok(());
    }
    let minter =
        sb_auth::TokenMinter::from_config(&sb_auth::AuthConfig::from_env(env, environment)?)?;
    println!(
        "  Dev tokens for the seeded org {} (12 h):",
        crate::token::DEV_ORG
    );
    let mut seen = Vec::new();
    for user in crate::seed::users()
        .into_iter()
        .filter(|u| u.org.to_string() == crate::token::DEV_ORG)
    {
        if seen.contains(&user.role) {
            continue;
        }
        seen.push(user.role);
        let principal = sb_auth::Principal {
            user_id: user.user.into(),
            org_id: user.org.into(),
            role: user.role.parse().map_err(anyhow::Error::msg)?,
            teams: user.teams.iter().copied().map(Into::into).collect(),
            name: Some(user.name.to_owned()),
        };
        let token = minter.mint(&principal, Duration::from_secs(12 * 3600))?;
        println!("    {:<9} {token}", user.role);
    }
    println!();
    Ok(())
}
