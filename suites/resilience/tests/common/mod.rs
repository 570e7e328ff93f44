//! What the fault tests share: readiness checks and the traffic loop that records every answer.

#![allow(dead_code, reason = "each test binary uses a part of the harness")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sb_resilience::traffic::{Sample, Traffic};
use serde_json::Value;
use tokio_util_free::Stop;

pub type Result<T = (), E = sb_testkit::Error> = std::result::Result<T, E>;

/// A stop flag for background traffic (tokio's `watch`, to keep dependencies to the crate's).
pub mod tokio_util_free {
    #[derive(Clone)]
    pub struct Stop(pub tokio::sync::watch::Receiver<bool>);
    impl Stop {
        pub fn stopped(&self) -> bool {
            *self.0.borrow()
        }
    }
}

/// `GET /readyz` of `base`: (status, content type, body).
pub async fn readyz(client: &reqwest::Client, base: &str) -> Result<(u16, String, Value)> {
    let response = client.get(format!("{base}/readyz")).send().await?;
    let answer = sb_testkit::Answer::read(response).await?;
    Ok((answer.status, answer.content_type, answer.body))
}

/// Every kind of traffic, round after round, until stopped; samples are collected.
pub struct Load {
    stop: tokio::sync::watch::Sender<bool>,
    pub samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `lanes` concurrent loops over the four kinds of traffic.
    pub fn start(traffic: &Traffic, lanes: usize) -> Self {
        let (stop, watch) = tokio::sync::watch::channel(false);
        let samples = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..lanes)
            .map(|lane| {
                let traffic = traffic.clone();
                let samples = samples.clone();
                let stop = Stop(watch.clone());
                tokio::spawn(async move {
                    let mut round = lane;
                    while !stop.stopped() {
                        let got = match round % 4 {
                            0 => traffic.video_call().await,
                            1 => traffic.inbound_call().await,
                            2 => traffic.monitoring_session().await,
                            _ => traffic.signaling_exchange().await,
                        };
                        samples
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .extend(got);
                        round += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            samples,
            tasks,
        }
    }

    /// Samples so far, emptied.
    pub fn take(&self) -> Vec<Sample> {
        std::mem::take(
            &mut *self
                .samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub async fn stop(self) -> Result<Vec<Sample>> {
        self.stop.send_replace(true);
        let Self { samples, tasks, .. } = self;
        for task in tasks {
            sb_testkit::within(Duration::from_secs(30), "traffic to stop", task).await??;
        }
        let samples = std::mem::take(
            &mut *samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Ok(samples)
    }
}

/// `samples` as lines `route status code elapsed`, for assertion messages.
pub fn describe(samples: &[&Sample]) -> String {
    samples
        .iter()
        .take(20)
        .map(|s| {
            format!(
                "{} -> {} {:?} in {:?}",
                s.route, s.status, s.code, s.elapsed
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
