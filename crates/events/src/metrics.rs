//! The event backbone's metrics, declared in one place and registered in the service's registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct EventMetrics {
    /// Unpublished outbox rows, by source service.
    pub outbox_pending: IntGaugeVec,
    /// Time from an event's outbox insert to its JetStream ack, by source.
    pub outbox_publish_seconds: HistogramVec,
    /// Events acknowledged by JetStream, by source and subject.
    pub events_published_total: IntCounterVec,
    /// Outbox rows JetStream kept refusing (no stream for the subject, too large), moved to the
    /// dead letters so they stop holding up the rows behind them, by source.
    pub outbox_dead_letters_total: IntCounterVec,
    /// Messages handled by a consumer, by outcome (applied, duplicate, retried, dead_lettered).
    pub consumer_messages_total: IntCounterVec,
    /// Deliveries beyond the first, by consumer.
    pub consumer_redeliveries_total: IntCounterVec,
    /// Messages given up on after `max_deliver` (or undecodable), by consumer.
    pub consumer_dead_letters_total: IntCounterVec,
    /// Time to apply one message (transaction included), by consumer.
    pub consumer_handle_seconds: HistogramVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl EventMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            outbox_pending: IntGaugeVec::new(
                Opts::new("sb_outbox_pending", "Outbox rows not yet published."),
                &["source"],
            )?,
            outbox_publish_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "sb_outbox_publish_seconds",
                    "Outbox insert to JetStream ack.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["source"],
            )?,
            events_published_total: IntCounterVec::new(
                Opts::new(
                    "sb_events_published_total",
                    "Events acknowledged by JetStream.",
                ),
                &["source", "subject"],
            )?,
            outbox_dead_letters_total: IntCounterVec::new(
                Opts::new(
                    "sb_outbox_dead_letters_total",
                    "Outbox rows JetStream refused until the relay gave up on them.",
                ),
                &["source"],
            )?,
            consumer_messages_total: IntCounterVec::new(
                Opts::new(
                    "sb_consumer_messages_total",
                    "Messages handled by consumers, by outcome.",
                ),
                &["consumer", "outcome"],
            )?,
            consumer_redeliveries_total: IntCounterVec::new(
                Opts::new(
                    "sb_consumer_redeliveries_total",
                    "Deliveries after the first.",
                ),
                &["consumer"],
            )?,
            consumer_dead_letters_total: IntCounterVec::new(
                Opts::new(
                    "sb_consumer_dead_letters_total",
                    "Messages recorded as dead letters.",
                ),
                &["consumer"],
            )?,
            consumer_handle_seconds: HistogramVec::new(
                HistogramOpts::new("sb_consumer_handle_seconds", "Time to apply one message.")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["consumer"],
            )?,
        };
        registry.register(Box::new(metrics.outbox_pending.clone()))?;
        registry.register(Box::new(metrics.outbox_publish_seconds.clone()))?;
        registry.register(Box::new(metrics.events_published_total.clone()))?;
        registry.register(Box::new(metrics.outbox_dead_letters_total.clone()))?;
        registry.register(Box::new(metrics.consumer_messages_total.clone()))?;
        registry.register(Box::new(metrics.consumer_redeliveries_total.clone()))?;
        registry.register(Box::new(metrics.consumer_dead_letters_total.clone()))?;
        registry.register(Box::new(metrics.consumer_handle_seconds.clone()))?;
        Ok(metrics)
    }

    /// Metrics in a registry of their own (tools, benchmarks, tests).
    pub fn standalone() -> Result<Self, prometheus::Error> {
        Self::register(&Registry::new())
    }
}
