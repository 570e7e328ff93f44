//! The telephony service's own metrics (HTTP and event metrics come from the platform and events
//! crates).

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use sb_twilio::TwilioError;

#[derive(Clone)]
pub struct TelephonyMetrics {
    webhooks: IntCounterVec,
    twilio: IntCounterVec,
    followup: IntCounterVec,
    degraded: IntCounterVec,
    status_writes: IntCounterVec,
    active_calls: IntGauge,
}

impl TelephonyMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let webhooks = IntCounterVec::new(
            Opts::new(
                "sb_telephony_webhooks_total",
                "Twilio webhooks received, by webhook and outcome (applied, duplicate, stale, unknown_call, unknown_number, rejected, failed)",
            ),
            &["webhook", "outcome"],
        )?;
        let twilio = IntCounterVec::new(
            Opts::new(
                "sb_telephony_twilio_requests_total",
                "Twilio API requests (each attempt), by operation and outcome (ok, rejected, busy, unavailable)",
            ),
            &["operation", "outcome"],
        )?;
        let followup = IntCounterVec::new(
            Opts::new(
                "sb_telephony_followup_actions_total",
                "What the follow-up job did, by action (price_stored, price_gave_up, quality_stored, quality_gave_up, status_synced, orphan_failed)",
            ),
            &["action"],
        )?;
        let degraded = IntCounterVec::new(
            Opts::new(
                "sb_telephony_quality_degraded_total",
                "Calls whose quality crossed a threshold, by source (insights, sdk)",
            ),
            &["source"],
        )?;
        let status_writes = IntCounterVec::new(
            Opts::new(
                "sb_telephony_status_writes_total",
                "Status callbacks applied, by path: one_statement (read, then one versioned write) or locked (the call changed between the two, or has no CallSid yet: applied under its lock)",
            ),
            &["path"],
        )?;
        let active_calls = IntGauge::new(
            "sb_telephony_active_calls",
            "Calls not yet in a final status: the database's count, set by each follow-up pass (every replica reports the same number)",
        )?;
        registry.register(Box::new(webhooks.clone()))?;
        registry.register(Box::new(active_calls.clone()))?;
        registry.register(Box::new(twilio.clone()))?;
        registry.register(Box::new(followup.clone()))?;
        registry.register(Box::new(degraded.clone()))?;
        registry.register(Box::new(status_writes.clone()))?;
        Ok(Self {
            webhooks,
            twilio,
            followup,
            degraded,
            status_writes,
            active_calls,
        })
    }

    pub fn set_active_calls(&self, count: i64) {
        self.active_calls.set(count);
    }

    /// A status callback applied by `path` (`one_statement` or `locked`).
    pub fn status_write(&self, path: &str) {
        self.status_writes.with_label_values(&[path]).inc();
    }

    pub fn webhook(&self, webhook: &str, outcome: &str) {
        self.webhooks.with_label_values(&[webhook, outcome]).inc();
    }

    pub fn twilio_call<T>(&self, operation: &str, outcome: &Result<T, TwilioError>) {
        let outcome = match outcome {
            Ok(_) => "ok",
            Err(TwilioError::Rejected { .. }) => "rejected",
            Err(TwilioError::Busy(_)) => "busy",
            Err(TwilioError::Unavailable(_)) => "unavailable",
        };
        self.twilio.with_label_values(&[operation, outcome]).inc();
    }

    pub fn followup(&self, action: &str, count: u64) {
        if count > 0 {
            self.followup.with_label_values(&[action]).inc_by(count);
        }
    }

    pub fn degraded(&self, source: &str) {
        self.degraded.with_label_values(&[source]).inc();
    }
}
