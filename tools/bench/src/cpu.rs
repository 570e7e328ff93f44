//! CPU time per operation, the primary figure of every scenario: user + system time read from
//! `/proc` before and after a measured window, for each process (and, in the harness's own
//! process, each thread) that does the work, divided by the operations done in the window.
//!
//! Parts of the stack:
//! - the service: built in-process, so the harness's threads are split by thread: the load
//!   generator runs on the main runtime (threads named `sb-load`, and the main thread), the fakes
//!   (LiveKit, Twilio) on the threads created while they started; every other thread (the
//!   service's HTTP workers, its acceptor and its background runtime `sb-svc`) is the service;
//! - its Postgres backends, by `application_name` (`sb_db` names the workers' pools `…/http` and
//!   the shared one, which the outbox relay uses, `…/background`);
//! - the NATS server, and the peer's process (pgbench, Node) with its backends.
//!
//! Processes (or threads) that exit inside a window lose what they spent in it: pgbench's are
//! read while it runs, and the windows end before anything measured exits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use diesel::sql_types::{Integer, Text};

use crate::report::Verdict;
use crate::stats::{Spread, decimals_for, number};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// A part of the measured stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// Our service's threads.
    Service,
    /// Postgres backends of the service's request pools (`…/http`).
    RequestBackends,
    /// Postgres backends of the service's background pool and listener: the outbox relay.
    RelayBackends,
    /// The NATS server.
    Nats,
    /// The harness's load generator.
    LoadGenerator,
    /// The fakes of LiveKit and Twilio.
    Fakes,
    /// The peer's process: pgbench, or the Node server.
    Peer,
    /// The peer's Postgres backends.
    PeerBackends,
}

/// `application_name` of the harness's own connections (never counted).
pub const HARNESS_APP: &str = "sb-bench";
/// How the harness names the in-process services' connections (`sb-video`, `sb-telephony`).
pub const SERVICE_APP_PREFIX: &str = "sb-";
/// `application_name` of the Node peer's connections.
pub const NODE_APP: &str = "node-peer";

/// Clock ticks per second of /proc's CPU times (`sysconf(_SC_CLK_TCK)`, read with `getconf`).
pub fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The command name and utime + stime (clock ticks) of a `/proc/<pid>/stat` or
/// `/proc/<pid>/task/<tid>/stat` line. The name is between the first `(` and the last `)`
/// (it may hold spaces and parentheses); utime and stime are fields 14 and 15 of proc(5).
pub fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // `fields[0]` is field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((name, field(14)? + field(15)?))
}

/// The start time (clock ticks after boot, field 22) of a stat line.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let close = stat.rfind(')')?;
    stat.get(close + 1..)?
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

fn read_stat(path: &str) -> Option<(String, u64)> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// Which part a backend is, from its `application_name`; `None` for connections not measured
/// (the harness's, other services' or other engineers' tests on other databases are filtered
/// by database before).
pub fn backend_part(application_name: &str) -> Option<Part> {
    let ours = application_name.starts_with(SERVICE_APP_PREFIX) && application_name != HARNESS_APP;
    if application_name == "pgbench" || application_name == NODE_APP {
        Some(Part::PeerBackends)
    } else if ours && application_name.ends_with("/http") {
        Some(Part::RequestBackends)
    } else if ours {
        // The shared pool (`…/background`: relay, consumers, jobs) and the relay's LISTEN
        // connection, named as the service's URL names it (`sb-video`).
        Some(Part::RelayBackends)
    } else {
        // The harness's own (`sb-bench`, and its test database pool `switchboard/…`).
        None
    }
}

/// Which part a thread of the harness's process is.
pub fn thread_part(tid: u32, pid: u32, name: &str, fakes: &HashSet<u32>) -> Part {
    if tid == pid || name.starts_with("sb-load") {
        Part::LoadGenerator
    } else if fakes.contains(&tid) {
        Part::Fakes
    } else {
        Part::Service
    }
}

/// The ids of this process's threads.
pub fn own_threads() -> HashSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The oldest `nats-server` process (the machine's shared one; test clusters come and go).
pub fn nats_pid() -> Option<u32> {
    let mut best: Option<(u64, u32)> = None;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if parse_stat(&stat).is_some_and(|(name, _)| name == "nats-server")
            && let Some(start) = parse_start_time(&stat)
            && best.is_none_or(|(s, _)| start < s)
        {
            best = Some((start, pid));
        }
    }
    best.map(|(_, pid)| pid)
}

/// CPU ticks of every measured process or thread at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    ticks: HashMap<(Part, u32), u64>,
    at: Option<std::time::Instant>,
}

impl Snapshot {
    pub fn from_ticks(entries: &[(Part, u32, u64)]) -> Self {
        Self {
            ticks: entries.iter().map(|&(p, id, t)| ((p, id), t)).collect(),
            at: None,
        }
    }

    /// What each part spent since `before`, in seconds. A process or thread absent from `before`
    /// started inside the window (a new pooled connection): all its time is the window's.
    pub fn since(&self, before: &Snapshot) -> Usage {
        let mut seconds: BTreeMap<Part, f64> = BTreeMap::new();
        for (&(part, id), &after) in &self.ticks {
            let start = before.ticks.get(&(part, id)).copied().unwrap_or(0);
            *seconds.entry(part).or_default() += after.saturating_sub(start) as f64 / clock_ticks();
        }
        let wall = match (before.at, self.at) {
            (Some(b), Some(a)) => a.saturating_duration_since(b).as_secs_f64(),
            _ => f64::NAN,
        };
        Usage { seconds, wall }
    }
}

/// CPU-seconds each part spent in a window.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub seconds: BTreeMap<Part, f64>,
    /// The window's length, seconds (NaN if unknown).
    pub wall: f64,
}

impl Usage {
    pub fn of(&self, part: Part) -> f64 {
        self.seconds.get(&part).copied().unwrap_or(0.0)
    }

    /// Microseconds of CPU per operation, for each part.
    pub fn per_op(&self, ops: u64) -> PerOp {
        let us = |part| {
            if ops == 0 {
                f64::NAN
            } else {
                self.of(part) * 1e6 / ops as f64
            }
        };
        PerOp {
            service: us(Part::Service),
            request_backends: us(Part::RequestBackends),
            relay_backends: us(Part::RelayBackends),
            nats: us(Part::Nats),
            load: us(Part::LoadGenerator),
            fakes: us(Part::Fakes),
            peer: us(Part::Peer),
            peer_backends: us(Part::PeerBackends),
        }
    }
}

/// CPU per operation of each part, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PerOp {
    pub service: f64,
    pub request_backends: f64,
    pub relay_backends: f64,
    pub nats: f64,
    pub load: f64,
    pub fakes: f64,
    pub peer: f64,
    pub peer_backends: f64,
}

impl PerOp {
    /// Our whole stack: the service, all its backends, NATS (not the load generator nor fakes).
    pub fn ours(&self) -> f64 {
        self.service + self.request_backends + self.relay_backends + self.nats
    }

    /// The peer's whole stack: its process and its backends.
    pub fn peer_stack(&self) -> f64 {
        self.peer + self.peer_backends
    }
}

/// Reads the snapshots: this process's threads, the backends of one database, NATS, a peer.
pub struct Probe {
    database: String,
    conn: tokio::sync::Mutex<AsyncPgConnection>,
    fakes: Mutex<HashSet<u32>>,
    nats: Option<u32>,
}

#[derive(diesel::QueryableByName)]
struct Backend {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    application_name: String,
}

impl Probe {
    /// A probe of the backends of the database at `url` (its own connection is named
    /// [`HARNESS_APP`] and not counted).
    pub async fn new(url: &str) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url)?;
        let database = parsed.path().trim_start_matches('/').to_owned();
        let conn = AsyncPgConnection::establish(&with_application_name(url, HARNESS_APP)).await?;
        Ok(Self {
            database,
            conn: tokio::sync::Mutex::new(conn),
            fakes: Mutex::default(),
            nats: nats_pid(),
        })
    }

    /// Counts the threads created while `start` runs (a fake's HTTP workers) as fakes.
    pub async fn fakes_started<T>(&self, start: impl std::future::Future<Output = T>) -> T {
        let before = own_threads();
        let value = start.await;
        // actix starts a server's worker threads when its spawned future first runs.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let new: Vec<u32> = own_threads().difference(&before).copied().collect();
        if let Ok(mut fakes) = self.fakes.lock() {
            fakes.extend(new);
        }
        value
    }

    /// Every measured part now; `peer` is the peer's process, if one runs.
    pub async fn snapshot(&self, peer: Option<u32>) -> anyhow::Result<Snapshot> {
        let mut entries = Vec::new();
        let backends: Vec<Backend> = {
            let mut conn = self.conn.lock().await;
            diesel::sql_query(
                "SELECT pid, coalesce(application_name, '') AS application_name FROM pg_stat_activity \
                 WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            )
            .bind::<Text, _>(&self.database)
            .load(&mut *conn)
            .await?
        };
        for backend in backends {
            if let (Some(part), Ok(pid)) = (
                backend_part(&backend.application_name),
                u32::try_from(backend.pid),
            ) && let Some((_, ticks)) = read_stat(&format!("/proc/{pid}/stat"))
            {
                entries.push((part, pid, ticks));
            }
        }
        let pid = std::process::id();
        let fakes = self.fakes.lock().map(|f| f.clone()).unwrap_or_default();
        for tid in own_threads() {
            if let Some((name, ticks)) = read_stat(&format!("/proc/self/task/{tid}/stat")) {
                entries.push((thread_part(tid, pid, &name, &fakes), tid, ticks));
            }
        }
        for (part, pid) in [(Part::Nats, self.nats), (Part::Peer, peer)] {
            if let Some(pid) = pid
                && let Some((_, ticks)) = read_stat(&format!("/proc/{pid}/stat"))
            {
                entries.push((part, pid, ticks));
            }
        }
        let mut snapshot = Snapshot::from_ticks(&entries);
        snapshot.at = Some(std::time::Instant::now());
        Ok(snapshot)
    }
}

/// `url` with `application_name=name` (replacing one it has).
pub fn with_application_name(url: &str, name: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    let others: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "application_name")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .append_pair("application_name", name);
    parsed.into()
}

/// How many times less CPU per operation we spend than the peer (`peer / ours`), per run.
pub fn times_less(ours: &[f64], peer: &[f64]) -> Vec<f64> {
    crate::stats::ratios(peer, ours)
}

/// The spread of one part (or sum) of several runs' CPU per operation.
pub fn spread(per: &[PerOp], f: impl Fn(&PerOp) -> f64) -> Option<Spread> {
    Spread::of(&per.iter().map(f).collect::<Vec<_>>())
}

fn us(per: &[PerOp], f: impl Fn(&PerOp) -> f64) -> String {
    spread(per, f).map_or("n/a".to_owned(), |s| s.render(decimals_for(s.median)))
}

/// Our whole stack's CPU per operation and its parts, e.g. `412 [398–430] µs: service 120, …`.
pub fn describe_ours(per: &[PerOp], fakes: &str) -> String {
    let median = |f: fn(&PerOp) -> f64| {
        spread(per, f).map_or("n/a".to_owned(), |s| {
            number(s.median, decimals_for(s.median))
        })
    };
    let fakes = if fakes.is_empty() {
        String::new()
    } else {
        format!(", {fakes} {}", median(|p| p.fakes))
    };
    format!(
        "{} µs: service {}, request backends {}, relay backends {}, NATS {} (not counted: load generator {}{fakes})",
        us(per, PerOp::ours),
        median(|p| p.service),
        median(|p| p.request_backends),
        median(|p| p.relay_backends),
        median(|p| p.nats),
        median(|p| p.load),
    )
}

/// A peer's CPU per operation: its process and its backends.
pub fn describe_peer(per: &[PerOp], process: &str) -> String {
    let median = |f: fn(&PerOp) -> f64| {
        spread(per, f).map_or("n/a".to_owned(), |s| {
            number(s.median, decimals_for(s.median))
        })
    };
    format!(
        "{} µs ({process} {}, its backends {})",
        us(per, PerOp::peer_stack),
        median(|p| p.peer),
        median(|p| p.peer_backends)
    )
}

/// The spread of per-run ratios and whether their median is at most `limit`.
pub fn at_most(ratios: &[f64], limit: f64) -> (Option<Spread>, Verdict) {
    let spread = Spread::of(ratios);
    let verdict = spread.map_or(Verdict::NotApplicable, |s| {
        Verdict::from_bool(s.median <= limit)
    });
    (spread, verdict)
}

/// The spread of per-run ratios and whether their median is at least `limit`.
pub fn at_least(ratios: &[f64], limit: f64) -> (Option<Spread>, Verdict) {
    let spread = Spread::of(ratios);
    let verdict = spread.map_or(Verdict::NotApplicable, |s| {
        Verdict::from_bool(s.median >= limit)
    });
    (spread, verdict)
}

/// A ratio's spread as `1.8 [1.6–2.0]×`.
pub fn times(spread: Option<Spread>) -> String {
    spread.map_or("n/a".to_owned(), |s| format!("{}×", s.render(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_the_name_and_user_plus_system_ticks() {
        // A real line of a postgres backend (fields 14, 15: utime 1, stime 2).
        let line = "2227 (postgres) S 1 2227 2227 0 -1 4194304 4837 78260 0 12 1 2 28 36 20 0 1 0 2956 222543872 7616 18446744073709551615";
        assert_eq!(parse_stat(line), Some(("postgres".to_owned(), 3)));
        assert_eq!(parse_start_time(line), Some(2956));
        // A thread name with spaces and a parenthesis.
        let line = "77 (actix-server w) x) R 1 1 1 0 -1 0 0 0 0 0 250 125 0 0 20 0 9 0 100 0 0";
        assert_eq!(
            parse_stat(line),
            Some(("actix-server w) x".to_owned(), 375))
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (short) S 1 2"), None);
    }

    #[test]
    fn this_process_reads_itself() {
        let (name, _) = read_stat("/proc/self/stat").unwrap();
        assert!(!name.is_empty());
        assert!(own_threads().contains(&std::process::id()));
        assert!(clock_ticks() > 0.0);
    }

    #[test]
    fn backends_and_threads_are_told_apart() {
        assert_eq!(backend_part("sb-video/http"), Some(Part::RequestBackends));
        assert_eq!(backend_part("switchboard/http"), None);
        assert_eq!(backend_part("switchboard/background"), None);
        assert_eq!(
            backend_part("sb-video/background"),
            Some(Part::RelayBackends)
        );
        assert_eq!(backend_part("sb-video"), Some(Part::RelayBackends));
        assert_eq!(backend_part(""), None);
        assert_eq!(backend_part("pgbench"), Some(Part::PeerBackends));
        assert_eq!(backend_part(NODE_APP), Some(Part::PeerBackends));
        assert_eq!(backend_part(HARNESS_APP), None);
        let fakes: HashSet<u32> = [12].into();
        assert_eq!(thread_part(10, 10, "sb-bench", &fakes), Part::LoadGenerator);
        assert_eq!(thread_part(11, 10, "sb-load", &fakes), Part::LoadGenerator);
        assert_eq!(thread_part(12, 10, "actix-server wo", &fakes), Part::Fakes);
        assert_eq!(
            thread_part(13, 10, "actix-server wo", &fakes),
            Part::Service
        );
        assert_eq!(thread_part(14, 10, "sb-svc", &fakes), Part::Service);
    }

    #[test]
    fn a_window_is_the_difference_per_process_and_new_ones_count_whole() {
        let ticks = clock_ticks();
        let t = |s: f64| (s * ticks) as u64;
        let before = Snapshot::from_ticks(&[
            (Part::Service, 1, t(10.0)),
            (Part::RequestBackends, 100, t(5.0)),
        ]);
        let after = Snapshot::from_ticks(&[
            (Part::Service, 1, t(12.0)),
            (Part::RequestBackends, 100, t(6.0)),
            // A connection opened inside the window.
            (Part::RequestBackends, 101, t(0.5)),
            (Part::Peer, 7, t(3.0)),
        ]);
        let usage = after.since(&before);
        assert!((usage.of(Part::Service) - 2.0).abs() < 1e-9);
        assert!((usage.of(Part::RequestBackends) - 1.5).abs() < 1e-9);
        assert_eq!(usage.of(Part::Nats), 0.0);
        let per = usage.per_op(1_000);
        // 2 s over 1,000 operations: 2,000 µs each.
        assert!((per.service - 2_000.0).abs() < 1e-6);
        assert!((per.ours() - 3_500.0).abs() < 1e-6);
        assert!((per.peer_stack() - 3_000.0).abs() < 1e-6);
        assert!(usage.per_op(0).service.is_nan());
    }

    #[test]
    fn ratio_targets_are_judged_on_the_median_of_per_run_ratios() {
        // Whole stack ≤ 2× pgbench's: 1.5, 2.5, 1.9 → median 1.9: met.
        let ours = [300.0, 500.0, 380.0];
        let pgbench = [200.0, 200.0, 200.0];
        let (spread, met) = at_most(&crate::stats::ratios(&ours, &pgbench), 2.0);
        assert_eq!(met, Verdict::Met);
        assert_eq!(times(spread), "1.90 [1.50–2.50]×");
        let (_, met) = at_most(&[2.1, 2.2, 1.0], 2.0);
        assert_eq!(met, Verdict::Missed);
        // Node ≥ 5× our CPU per callback: 4.9 is missed, 5 is met.
        assert_eq!(
            at_least(&times_less(&[10.0], &[49.0]), 5.0).1,
            Verdict::Missed
        );
        assert_eq!(at_least(&times_less(&[10.0], &[50.0]), 5.0).1, Verdict::Met);
        // No run measured: not applicable, never met.
        assert_eq!(at_least(&[f64::NAN], 5.0).1, Verdict::NotApplicable);
        assert_eq!(times(None), "n/a");
    }

    #[test]
    fn parts_are_described_with_their_medians() {
        let per = PerOp {
            service: 100.0,
            request_backends: 200.0,
            relay_backends: 50.0,
            nats: 10.0,
            load: 80.0,
            fakes: 5.0,
            peer: 30.0,
            peer_backends: 150.0,
        };
        assert_eq!(
            describe_ours(&[per], "fake LiveKit"),
            "360 µs: service 100, request backends 200, relay backends 50.0, NATS 10.0 (not counted: load generator 80.0, fake LiveKit 5.00)"
        );
        assert_eq!(
            describe_peer(&[per], "pgbench"),
            "180 µs (pgbench 30.0, its backends 150)"
        );
    }

    #[test]
    fn urls_get_the_application_name() {
        assert_eq!(
            with_application_name("postgres://p@h:5432/db?application_name=x&a=b", "sb-bench"),
            "postgres://p@h:5432/db?a=b&application_name=sb-bench"
        );
        assert_eq!(times_less(&[10.0], &[50.0]), vec![5.0]);
    }
}
