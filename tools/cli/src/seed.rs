//! `switchboard seed`: publishes a realistic set of CRM events (the users, then appointments),
//! standing in for the CRM, so a dev stack has data (monitoring's roster lists the reps). Ids are fixed (tokens minted for the printed users work across
//! runs); versions come from the clock, so a later seed moves the appointments to today again.

use std::time::Duration;

use chrono::{DateTime, Duration as Days, Utc};
use sb_events::proto::{
    Appointment, AppointmentCancelled, AppointmentCreated, AppointmentKind, AppointmentStatus,
    AppointmentUpdated, Lead, User, UserCreated, UserRole,
};
use sb_events::publish::publish_with_id;
use sb_events::streams::{StreamSettings, ensure_streams};
use sb_events::{Domain, Event, Namespace};
use sb_platform::config::NatsConfig;
use sb_platform::{Env, ProcessEnv};
use uuid::Uuid;

use crate::token::DEV_ORG;

#[derive(clap::Args)]
pub struct Args {
    /// Print what would be published without publishing it.
    #[arg(long)]
    dry_run: bool,
}

/// Namespace of the event ids, so re-running a seed in the same second publishes the same ids.
const SEED_NAMESPACE: Uuid = Uuid::from_u128(0x0190a000_0000_7000_8000_5eed5eed5eed);

fn org(n: u128) -> Uuid {
    if n == 1 {
        DEV_ORG.parse().unwrap_or(Uuid::nil())
    } else {
        Uuid::from_u128(0x0190a000_0000_7000_8000_000000000000 + n)
    }
}
fn user(org: u128, n: u128) -> Uuid {
    Uuid::from_u128(0x0190a000_0000_7000_8001_000000000000 + org * 0x100 + n)
}
fn team(org: u128, n: u128) -> Uuid {
    Uuid::from_u128(0x0190a000_0000_7000_8002_000000000000 + org * 0x100 + n)
}
fn appointment_id(org: u128, n: u128) -> Uuid {
    Uuid::from_u128(0x0190a000_0000_7000_8003_000000000000 + org * 0x100 + n)
}

/// A user of the sample data, printed so `switchboard token` can impersonate them.
pub struct SeedUser {
    pub org: Uuid,
    pub user: Uuid,
    pub role: &'static str,
    pub name: &'static str,
    pub teams: Vec<Uuid>,
}

pub fn users() -> Vec<SeedUser> {
    let mut out = Vec::new();
    for o in [1u128, 2] {
        let (t1, t2) = (team(o, 1), team(o, 2));
        let names: [(&str, &str, Vec<Uuid>); 8] = if o == 1 {
            [
                ("CEO", "Camille Laurent", vec![]),
                ("DIRECTOR", "Hugo Bernard", vec![]),
                ("MANAGER", "Léa Martin", vec![t1]),
                ("CLOSER", "Lucas Petit", vec![t1]),
                ("CLOSER", "Chloé Dubois", vec![t2]),
                ("SETTER", "Nathan Moreau", vec![t1]),
                ("SETTER", "Inès Garnier", vec![t2]),
                ("MEMBER", "Dr. Paul Roux", vec![]),
            ]
        } else {
            [
                ("CEO", "Olivia Brooks", vec![]),
                ("DIRECTOR", "Ethan Clarke", vec![]),
                ("MANAGER", "Mia Turner", vec![t1]),
                ("CLOSER", "Noah Walker", vec![t1]),
                ("CLOSER", "Ava Harris", vec![t2]),
                ("SETTER", "Liam Scott", vec![t1]),
                ("SETTER", "Emma Lewis", vec![t2]),
                ("MEMBER", "Sophie Hall", vec![]),
            ]
        };
        for (i, (role, name, teams)) in names.into_iter().enumerate() {
            out.push(SeedUser {
                org: org(o),
                user: user(o, i as u128 + 1),
                role,
                name,
                teams,
            });
        }
    }
    // Platform staff: every org; the token carries the first org.
    out.push(SeedUser {
        org: org(1),
        user: user(0, 0xff),
        role: "ADMIN",
        name: "Platform Admin",
        teams: vec![],
    });
    out
}

/// One CRM event to publish.
pub enum SeedEvent {
    Created(AppointmentCreated),
    Updated(AppointmentUpdated),
    Cancelled(AppointmentCancelled),
}

impl SeedEvent {
    fn appointment(&self) -> Option<&Appointment> {
        match self {
            SeedEvent::Created(e) => e.appointment.as_ref(),
            SeedEvent::Updated(e) => e.appointment.as_ref(),
            SeedEvent::Cancelled(e) => e.appointment.as_ref(),
        }
    }

    /// The appointment's id, when it parses.
    pub fn appointment_id(&self) -> Option<Uuid> {
        self.appointment().and_then(|a| a.id.parse().ok())
    }

    fn subject(&self) -> String {
        match self {
            SeedEvent::Created(_) => AppointmentCreated::SUBJECT.to_string(),
            SeedEvent::Updated(_) => AppointmentUpdated::SUBJECT.to_string(),
            SeedEvent::Cancelled(_) => AppointmentCancelled::SUBJECT.to_string(),
        }
    }
}

/// The events of a seed made at `now`: per org, six appointments (remote and onsite, past,
/// today and later), two of them updated and one cancelled.
pub fn events(now: DateTime<Utc>) -> Vec<SeedEvent> {
    let base_version = now.timestamp() * 10;
    let hour = |h: i64| (now + Days::hours(h)).timestamp_millis();
    let leads = [
        ("Julie Fontaine", "+33612345601"),
        ("Marc Lefèvre", "+33612345602"),
        ("Sarah Cohen", "+33612345603"),
        ("Thomas Girard", "+33612345604"),
        ("Amélie Blanc", "+33612345605"),
        ("Karim Haddad", "+33612345606"),
    ];
    let mut out = Vec::new();
    for o in [1u128, 2] {
        let member = user(o, 8);
        // (closer, setter, team, guest account, starts in hours, kind)
        let plan: [(u128, u128, u128, bool, i64, AppointmentKind); 6] = [
            (4, 6, 1, true, 1, AppointmentKind::Remote),
            (5, 7, 2, false, 3, AppointmentKind::Remote),
            (4, 6, 1, false, 24, AppointmentKind::Onsite),
            (5, 7, 2, false, 26, AppointmentKind::Remote),
            (4, 6, 1, true, -2, AppointmentKind::Remote),
            (5, 7, 2, false, 50, AppointmentKind::Onsite),
        ];
        for (i, (closer, setter, t, guest, starts, kind)) in plan.into_iter().enumerate() {
            let (lead_name, phone) = leads[i];
            let email = format!(
                "{}@example.com",
                lead_name.split(' ').next().unwrap_or("lead").to_lowercase()
            );
            let appointment = Appointment {
                id: appointment_id(o, i as u128 + 1).to_string(),
                org_id: org(o).to_string(),
                host_user_id: user(o, closer).to_string(),
                guest_user_id: if guest {
                    member.to_string()
                } else {
                    String::new()
                },
                setter_user_id: user(o, setter).to_string(),
                team_id: team(o, t).to_string(),
                lead: Some(Lead {
                    name: lead_name.to_owned(),
                    phone: phone.to_owned(),
                    email,
                }),
                scheduled_at_unix_ms: hour(starts),
                ends_at_unix_ms: hour(starts) + 45 * 60_000,
                kind: kind as i32,
                status: AppointmentStatus::Scheduled as i32,
                version: base_version + 1,
            };
            out.push(SeedEvent::Created(AppointmentCreated {
                appointment: Some(appointment.clone()),
            }));
            match i {
                0 | 2 => out.push(SeedEvent::Updated(AppointmentUpdated {
                    appointment: Some(Appointment {
                        status: AppointmentStatus::Confirmed as i32,
                        version: base_version + 2,
                        ..appointment
                    }),
                })),
                3 => out.push(SeedEvent::Cancelled(AppointmentCancelled {
                    appointment: Some(Appointment {
                        status: AppointmentStatus::Cancelled as i32,
                        version: base_version + 2,
                        ..appointment
                    }),
                    reason: "The lead asked to postpone".to_owned(),
                })),
                4 => out.push(SeedEvent::Updated(AppointmentUpdated {
                    appointment: Some(Appointment {
                        status: AppointmentStatus::Completed as i32,
                        version: base_version + 2,
                        ..appointment
                    }),
                })),
                _ => {}
            }
        }
    }
    out
}

/// The seeded users as the CRM announces them (`crm.user.created`), versioned from `now` like
/// the appointments.
pub fn user_events(now: DateTime<Utc>) -> Vec<UserCreated> {
    users()
        .into_iter()
        .map(|u| {
            let role = match u.role {
                "ADMIN" => UserRole::Admin,
                "CEO" => UserRole::Ceo,
                "DIRECTOR" => UserRole::Director,
                "MANAGER" => UserRole::Manager,
                "CLOSER" => UserRole::Closer,
                "SETTER" => UserRole::Setter,
                _ => UserRole::Member,
            };
            UserCreated {
                user: Some(User {
                    id: u.user.to_string(),
                    org_id: u.org.to_string(),
                    role: role as i32,
                    team_ids: u.teams.iter().map(ToString::to_string).collect(),
                    display_name: u.name.to_owned(),
                    active: true,
                    version: now.timestamp() * 10 + 1,
                }),
            }
        })
        .collect()
}

/// Publishes the users, then `events`; returns how many events were published.
pub async fn publish_all(
    js: &async_nats::jetstream::Context,
    ns: &Namespace,
    events: &[SeedEvent],
) -> anyhow::Result<usize> {
    let users = user_events(Utc::now());
    for event in &users {
        let user = event
            .user
            .as_ref()
            .map(|u| (u.id.as_str(), u.version))
            .unwrap_or_default();
        let id = Uuid::new_v5(
            &SEED_NAMESPACE,
            format!("user:{}:{}", user.0, user.1).as_bytes(),
        );
        publish_with_id(js, ns, event, id).await?;
    }
    for event in events {
        let appointment = event
            .appointment()
            .map(|a| (a.id.as_str(), a.version))
            .unwrap_or_default();
        let id = Uuid::new_v5(
            &SEED_NAMESPACE,
            format!("{}:{}", appointment.0, appointment.1).as_bytes(),
        );
        match event {
            SeedEvent::Created(e) => publish_with_id(js, ns, e, id).await?,
            SeedEvent::Updated(e) => publish_with_id(js, ns, e, id).await?,
            SeedEvent::Cancelled(e) => publish_with_id(js, ns, e, id).await?,
        };
    }
    Ok(users.len() + events.len())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let env = Env::new(&ProcessEnv);
    let ns = Namespace::from_env(&env)?;
    let events = events(Utc::now());
    if args.dry_run {
        for event in &events {
            let a = event.appointment();
            println!(
                "{} {} v{}",
                ns.subject(&event.subject()),
                a.map(|a| a.id.as_str()).unwrap_or(""),
                a.map(|a| a.version).unwrap_or(0)
            );
        }
        return Ok(());
    }
    let nats = NatsConfig::from_env(&env)?;
    let client = sb_platform::nats::connect(&nats, "seed").await?;
    let js = async_nats::jetstream::new(client.clone());
    ensure_streams(&js, &ns, &[Domain::Crm], &StreamSettings::from_env(&env)?).await?;
    let published = publish_all(&js, &ns, &events).await?;
    tokio::time::timeout(Duration::from_secs(5), client.flush()).await??;
    print_summary(published, &ns);
    Ok(())
}

pub fn print_summary(published: usize, ns: &Namespace) {
    println!(
        "Published {published} CRM events to {} (stream {}).",
        ns.subject("crm.>"),
        ns.stream(Domain::Crm)
    );
    println!();
    println!(
        "  {:<38} {:<9} {:<18} {:<38} teams",
        "org", "role", "name", "user"
    );
    for u in users() {
        let teams: Vec<String> = u.teams.iter().map(ToString::to_string).collect();
        println!(
            "  {:<38} {:<9} {:<18} {:<38} {}",
            u.org,
            u.role,
            u.name,
            u.user,
            teams.join(",")
        );
    }
    println!();
    println!(
        "  Act as one of them: switchboard token --role CLOSER --org <org> --user <user> --team <team>"
    );
}
