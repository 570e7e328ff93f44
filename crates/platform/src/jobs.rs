//! The one periodic-job loop every service uses: small named passes run in turn every period
//! until shutdown, each timed and counted, a failing one logged once and not stopping the others.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What a pass did: `Some(report)` when it changed something worth a log line.
type Outcome = Result<Option<String>, String>;

struct Pass<S> {
    name: &'static str,
    run: Box<dyn Fn(S) -> BoxFuture<'static, Outcome> + Send + Sync>,
}

/// A periodic job: its passes run in the order they were added, every `period`, the first time
/// one period after start (at start-up there is nothing old to repair yet).
///
/// A pass is an `async` function of the service's state returning `Result<R, E>`: `R` is what it
/// did (logged at info when not `R::default()`, i.e. when it repaired something), `E` why it
/// failed (logged at warn with the job and pass names; the next period retries). Every pass is
/// counted in `sb_job_pass_total{job,pass,outcome}` and timed in
/// `sb_job_pass_duration_seconds{job,pass}`.
pub struct Job<S> {
    name: &'static str,
    period: Duration,
    state: S,
    passes: Vec<Pass<S>>,
}

impl<S: Clone + Send + Sync + 'static> Job<S> {
    /// A job named `name` (a metric label and log field: `video-reconcile`) over `state`.
    pub fn new(name: &'static str, period: Duration, state: S) -> Self {
        Self {
            name,
            period,
            state,
            passes: Vec::new(),
        }
    }

    /// Adds a pass named `name` (a metric label: `snake_case`).
    #[must_use]
    pub fn pass<F, Fut, R, E>(mut self, name: &'static str, pass: F) -> Self
    where
        F: Fn(S) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Debug + Default + PartialEq + 'static,
        E: Display + 'static,
    {
        self.passes.push(Pass {
            name,
            run: Box::new(move |state| {
                pass(state)
                    .map(|result| match result {
                        Ok(report) if report != R::default() => Ok(Some(format!("{report:?}"))),
                        Ok(_) => Ok(None),
                        Err(error) => Err(error.to_string()),
                    })
                    .boxed()
            }),
        });
        self
    }

    /// The names of the passes, in order.
    pub fn pass_names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name).collect()
    }

    /// Runs every pass once, in order, unless `stop` fires in between; returns how many failed.
    pub async fn run_once(&self, metrics: &Metrics, stop: &CancellationToken) -> usize {
        let mut failed = 0;
        for pass in &self.passes {
            if stop.is_cancelled() {
                break;
            }
            let started = Instant::now();
            let outcome = (pass.run)(self.state.clone()).await;
            let seconds = started.elapsed().as_secs_f64();
            let label = if outcome.is_ok() { "ok" } else { "failed" };
            metrics.job_pass(self.name, pass.name, label, seconds);
            match outcome {
                Ok(Some(report)) => {
                    tracing::info!(job = self.name, pass = pass.name, %report, "job pass repaired something");
                }
                Ok(None) => {}
                Err(error) => {
                    failed += 1;
                    tracing::warn!(job = self.name, pass = pass.name, %error, "job pass failed; the next run retries");
                }
            }
        }
        failed
    }

    /// Runs the passes every period until `stop`. A pass under way finishes (it may hold a
    /// transaction); no other starts once `stop` has fired.
    pub async fn run(self, metrics: Metrics, stop: CancellationToken) {
        let mut interval =
            tokio::time::interval_at(tokio::time::Instant::now() + self.period, self.period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = interval.tick() => {}
            }
            self.run_once(&metrics, &stop).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Clone, Default)]
    struct Counters {
        first: Arc<AtomicUsize>,
        last: Arc<AtomicUsize>,
    }

    fn job(period: Duration, counters: &Counters) -> Job<Counters> {
        Job::new("test-job", period, counters.clone())
            .pass("first", |c: Counters| async move {
                c.first.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(1_u64)
            })
            .pass("broken", |_: Counters| async { Err::<u64, _>("boom") })
            .pass("last", |c: Counters| async move {
                c.last.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(0_u64)
            })
    }

    #[tokio::test]
    async fn a_failing_pass_does_not_stop_the_others() -> Result<(), prometheus::Error> {
        let metrics = Metrics::new("test")?;
        let counters = Counters::default();
        let job = job(Duration::from_secs(3600), &counters);
        assert_eq!(job.pass_names(), ["first", "broken", "last"]);
        let failed = job.run_once(&metrics, &CancellationToken::new()).await;
        assert_eq!(failed, 1);
        job.run_once(&metrics, &CancellationToken::new()).await;
        assert_eq!(counters.first.load(Ordering::SeqCst), 2);
        assert_eq!(counters.last.load(Ordering::SeqCst), 2);
        let text = metrics.render()?;
        for line in [
            r#"sb_job_pass_total{job="test-job",outcome="ok",pass="first"} 2"#,
            r#"sb_job_pass_total{job="test-job",outcome="failed",pass="broken"} 2"#,
            r#"sb_job_pass_total{job="test-job",outcome="ok",pass="last"} 2"#,
            r#"sb_job_pass_duration_seconds_count{job="test-job",pass="last"} 2"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn the_loop_runs_every_period_and_stops_promptly() -> Result<(), prometheus::Error> {
        let metrics = Metrics::new("test")?;
        let counters = Counters::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            job(Duration::from_millis(20), &counters).run(metrics.clone(), stop.clone()),
        );
        tokio::time::timeout(Duration::from_secs(5), async {
            while counters.last.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("two runs within 5 s");
        stop.cancel();
        tokio::time::timeout(Duration::from_millis(500), task)
            .await
            .expect("the loop stops within 500 ms of shutdown")
            .expect("the loop does not panic");
        Ok(())
    }

    #[tokio::test]
    async fn shutdown_while_waiting_returns_without_running_a_pass() -> Result<(), prometheus::Error>
    {
        let metrics = Metrics::new("test")?;
        let counters = Counters::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            job(Duration::from_secs(3600), &counters).run(metrics.clone(), stop.clone()),
        );
        stop.cancel();
        tokio::time::timeout(Duration::from_millis(500), task)
            .await
            .expect("the loop stops within 500 ms of shutdown")
            .expect("the loop does not panic");
        assert_eq!(counters.first.load(Ordering::SeqCst), 0);
        Ok(())
    }

    #[tokio::test]
    async fn no_pass_starts_after_shutdown() -> Result<(), prometheus::Error> {
        let metrics = Metrics::new("test")?;
        let stop = CancellationToken::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let job = Job::new(
            "test-job",
            Duration::from_secs(1),
            (stop.clone(), ran.clone()),
        )
        .pass(
            "cancels",
            |(stop, _): (CancellationToken, Arc<AtomicUsize>)| async move {
                stop.cancel();
                Ok::<_, String>(())
            },
        )
        .pass(
            "after",
            |(_, ran): (CancellationToken, Arc<AtomicUsize>)| async move {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(())
            },
        );
        job.run_once(&metrics, &stop).await;
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        Ok(())
    }
}
