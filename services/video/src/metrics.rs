//! The video service's own metrics (HTTP and event metrics come from the platform and events
//! crates).

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use sb_livekit::LiveKitError;

#[derive(Clone)]
pub struct VideoMetrics {
    webhooks: IntCounterVec,
    livekit: IntCounterVec,
    reconcile: IntCounterVec,
    active_calls: IntGauge,
}

impl VideoMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let webhooks = IntCounterVec::new(
            Opts::new(
                "sb_video_webhooks_total",
                "LiveKit webhooks received, by event and outcome (applied, duplicate, ignored, rejected)",
            ),
            &["event", "outcome"],
        )?;
        let livekit = IntCounterVec::new(
            Opts::new(
                "sb_video_livekit_requests_total",
                "LiveKit server API calls, by operation and outcome (ok, refused, unavailable)",
            ),
            &["operation", "outcome"],
        )?;
        let reconcile = IntCounterVec::new(
            Opts::new(
                "sb_video_reconcile_actions_total",
                "Repairs made by the reconciliation job, by action",
            ),
            &["action"],
        )?;
        let active_calls = IntGauge::new(
            "sb_video_active_calls",
            "Calls ONGOING now: the database's count, set by each reconciliation pass (every replica reports the same number)",
        )?;
        registry.register(Box::new(webhooks.clone()))?;
        registry.register(Box::new(active_calls.clone()))?;
        registry.register(Box::new(livekit.clone()))?;
        registry.register(Box::new(reconcile.clone()))?;
        Ok(Self {
            webhooks,
            livekit,
            reconcile,
            active_calls,
        })
    }

    pub fn set_active_calls(&self, count: i64) {
        self.active_calls.set(count);
    }

    /// The counter of webhooks refused for their signature (`event="unknown"`).
    pub fn rejected_webhooks(&self) -> sb_livekit::RejectedWebhooks {
        sb_livekit::RejectedWebhooks(self.webhooks.with_label_values(&["unknown", "rejected"]))
    }

    pub fn webhook(&self, event: &str, outcome: &str) {
        self.webhooks.with_label_values(&[event, outcome]).inc();
    }

    pub fn livekit_call<T>(&self, operation: &str, outcome: &Result<T, LiveKitError>) {
        let outcome = match outcome {
            Ok(_) => "ok",
            Err(LiveKitError::Refused { .. }) => "refused",
            Err(LiveKitError::Unavailable(_)) => "unavailable",
        };
        self.livekit.with_label_values(&[operation, outcome]).inc();
    }

    pub fn reconciled(&self, action: &str, count: u64) {
        if count > 0 {
            self.reconcile.with_label_values(&[action]).inc_by(count);
        }
    }
}
