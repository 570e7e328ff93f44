//! The load generator: a fixed number of workers on loopback, each sending its next request as
//! soon as the previous answered (closed loop), bounded in count and in time; latencies go to an
//! HDR histogram (microseconds, 3 significant digits).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What one load run measured.
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies of successful requests, in microseconds.
    pub histogram: Histogram<u64>,
    pub first_error: Option<String>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.histogram.is_empty() {
            return f64::NAN;
        }
        self.histogram.value_at_quantile(p) as f64 / 1000.0
    }
}

pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 60 s.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// An HTTP client for the load: keep-alive, one idle connection per worker, HTTP/1.1 only. An
/// idle connection is dropped after 4 s, before actix's 5 s keep-alive closes it: reusing one the
/// server is closing at that moment fails the request (seen once in 15,000 in an open loop, where
/// some connections wait their turn).
pub fn client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .pool_idle_timeout(Duration::from_secs(4))
        .http1_only()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Runs `request(i)` for i in 0..total with `concurrency` workers, stopping early at
/// `max_time`. A request returns Ok(()) when it got the expected answer.
pub async fn closed_loop<F, Fut>(
    concurrency: usize,
    total: usize,
    max_time: Duration,
    request: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = started + max_time;
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (next, request) = (next.clone(), request.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::new()?;
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let sent = Instant::now();
                tally.record(request(i).await, sent);
            }
            anyhow::Ok(tally)
        }));
    }
    let mut result = gather(workers).await?;
    result.elapsed = started.elapsed();
    Ok(result)
}

/// What one worker measured.
struct Tally {
    histogram: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            histogram: histogram()?,
            errors: 0,
            first_error: None,
        })
    }

    /// Records one request's outcome, its latency counted from `since`.
    fn record(&mut self, outcome: anyhow::Result<()>, since: Instant) {
        match outcome {
            Ok(()) => {
                let micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.histogram.saturating_record(micros.max(1));
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// The workers' tallies together (`elapsed` is the caller's to set).
async fn gather(
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<Tally>>>,
) -> anyhow::Result<LoadResult> {
    let mut result = LoadResult {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        histogram: histogram()?,
        first_error: None,
    };
    for worker in workers {
        let tally = worker.await??;
        result.histogram.add(&tally.histogram)?;
        result.errors += tally.errors;
        if result.first_error.is_none() {
            result.first_error = tally.first_error;
        }
    }
    result.ok = result.histogram.len();
    Ok(result)
}

/// Runs `request(i)` at a steady `rate` per second over `connections` workers (open loop): first
/// for `warm_up` (not recorded: new connections, caches, the writes right after a checkpoint),
/// then for `measure_for`. Request i is due at `i / rate` after the start; its latency counts from
/// when it was due, not from when a worker got to it, so a service that falls behind shows the
/// wait (no coordinated omission). The result's rate is the recorded requests over `measure_for`
/// (or the time they took, if longer).
pub async fn open_loop<F, Fut>(
    connections: usize,
    rate: f64,
    warm_up: Duration,
    measure_for: Duration,
    request: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    anyhow::ensure!(rate > 0.0, "the rate must be positive");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let next = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let started = tokio::time::Instant::now();
    let measured_from = started + warm_up;
    let deadline = measured_from + measure_for;
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (next, request) = (next.clone(), request.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::new()?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let due = started + interval.mul_f64(i as f64);
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let outcome = request(i).await;
                if due >= measured_from {
                    tally.record(outcome, due.into_std());
                }
            }
            anyhow::Ok(tally)
        }));
    }
    let mut result = gather(workers).await?;
    result.elapsed = measured_from.elapsed().max(measure_for);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_open_loop_keeps_its_rate_and_counts_the_wait_of_a_slow_service()
    -> anyhow::Result<()> {
        // A fast service: at 200/s, half a second of measurement is 100 requests, each answered
        // at once.
        let fast = open_loop(
            4,
            200.0,
            Duration::from_millis(100),
            Duration::from_millis(500),
            |_| async { Ok(()) },
        )
        .await?;
        // The 20 requests of the warm-up are not counted.
        assert_eq!(fast.ok, 100);
        assert!(
            (0.5..0.8).contains(&fast.elapsed.as_secs_f64()),
            "{:?}",
            fast.elapsed
        );
        assert!((fast.rate() - 200.0).abs() < 60.0, "{}", fast.rate());
        assert!(
            fast.percentile_ms(0.5) < 20.0,
            "{}",
            fast.percentile_ms(0.5)
        );

        // A service that takes 50 ms with 2 connections serves 40/s; asked for 100/s, requests
        // wait for a connection, and that wait is in their latency (it grows along the run).
        let slow = open_loop(
            2,
            100.0,
            Duration::ZERO,
            Duration::from_millis(500),
            |_| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(())
            },
        )
        .await?;
        assert_eq!(slow.ok, 50);
        assert!(
            slow.percentile_ms(0.99) > 500.0,
            "the queueing is counted: p99 {} ms",
            slow.percentile_ms(0.99)
        );
        Ok(())
    }
}
