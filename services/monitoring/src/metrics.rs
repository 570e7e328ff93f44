//! The monitoring service's own metrics.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use sb_livekit::LiveKitError;

#[derive(Clone)]
pub struct MonitoringMetrics {
    webhooks: IntCounterVec,
    livekit: IntCounterVec,
    sessions: IntCounterVec,
    pub live_streams: IntGauge,
}

impl MonitoringMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let webhooks = IntCounterVec::new(
            Opts::new(
                "sb_monitoring_webhooks_total",
                "LiveKit webhooks received, by event and outcome (applied, duplicate, ignored, rejected, failed)",
            ),
            &["event", "outcome"],
        )?;
        let livekit = IntCounterVec::new(
            Opts::new(
                "sb_monitoring_livekit_requests_total",
                "LiveKit server API calls, by operation and outcome",
            ),
            &["operation", "outcome"],
        )?;
        let sessions = IntCounterVec::new(
            Opts::new(
                "sb_monitoring_session_transitions_total",
                "Monitoring session transitions, by action (start, mode_change, pause, resume, renew, stop)",
            ),
            &["action"],
        )?;
        let live_streams = IntGauge::new(
            "sb_monitoring_live_streams",
            "Supervisors connected to GET /monitoring/stream on this instance",
        )?;
        registry.register(Box::new(webhooks.clone()))?;
        registry.register(Box::new(livekit.clone()))?;
        registry.register(Box::new(sessions.clone()))?;
        registry.register(Box::new(live_streams.clone()))?;
        Ok(Self {
            webhooks,
            livekit,
            sessions,
            live_streams,
        })
    }

    /// The counter of webhooks refused for their signature (`event="unknown"`).
    pub fn rejected_webhooks(&self) -> sb_livekit::RejectedWebhooks {
        sb_livekit::RejectedWebhooks(self.webhooks.with_label_values(&["unknown", "rejected"]))
    }

    pub fn webhook(&self, event: &str, outcome: &str) {
        self.webhooks.with_label_values(&[event, outcome]).inc();
    }

    pub fn transition(&self, action: &str) {
        self.sessions.with_label_values(&[action]).inc();
    }

    pub fn livekit_call<T>(&self, operation: &str, outcome: &Result<T, LiveKitError>) {
        let outcome = match outcome {
            Ok(_) => "ok",
            Err(LiveKitError::Refused { .. }) => "refused",
            Err(LiveKitError::Unavailable(_)) => "unavailable",
        };
        self.livekit.with_label_values(&[operation, outcome]).inc();
    }
}
