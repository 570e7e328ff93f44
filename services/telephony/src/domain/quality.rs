//! Call quality: the metrics the seed names (jitter, latency, packet loss, MOS, codec), where
//! they come from (Voice Insights' call summary, the mobile Voice SDK), and when a call counts as
//! degraded.

use serde_json::Value;

/// One measurement of a call's audio. Units: milliseconds, percent (0–100), MOS 1–5.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    pub jitter_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub packet_loss_percent: Option<f64>,
    pub mos: Option<f64>,
    /// The MOS was estimated from the other metrics.
    pub mos_estimated: bool,
    pub codec: Option<String>,
}

/// Limits beyond which a call's quality is degraded (`TELEPHONY_QUALITY_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub min_mos: f64,
    pub max_packet_loss_percent: f64,
    pub max_jitter_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_mos: 3.5,
            max_packet_loss_percent: 3.0,
            max_jitter_ms: 30.0,
        }
    }
}

impl Thresholds {
    /// Which limits `metrics` crosses (`mos`, `packetLoss`, `jitter`); empty when none.
    pub fn crossed(&self, metrics: &Metrics) -> Vec<&'static str> {
        let mut crossed = Vec::new();
        if metrics.mos.is_some_and(|mos| mos < self.min_mos) {
            crossed.push("mos");
        }
        if metrics
            .packet_loss_percent
            .is_some_and(|loss| loss > self.max_packet_loss_percent)
        {
            crossed.push("packetLoss");
        }
        if metrics
            .jitter_ms
            .is_some_and(|jitter| jitter > self.max_jitter_ms)
        {
            crossed.push("jitter");
        }
        crossed
    }
}

/// Checks a sample reported by a client: finite, non-negative, loss a percentage, MOS 1–5.
pub fn validate(metrics: &Metrics) -> Result<(), (&'static str, String)> {
    let checks: [(&'static str, Option<f64>, f64, f64); 4] = [
        ("jitter", metrics.jitter_ms, 0.0, 60_000.0),
        ("latency", metrics.latency_ms, 0.0, 60_000.0),
        ("packetLoss", metrics.packet_loss_percent, 0.0, 100.0),
        ("mos", metrics.mos, 1.0, 5.0),
    ];
    for (field, value, min, max) in checks {
        if let Some(value) = value
            && !(value.is_finite() && (min..=max).contains(&value))
        {
            return Err((field, format!("must be a number from {min} to {max}")));
        }
    }
    if metrics
        .codec
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 32 || !c.chars().all(|ch| ch.is_ascii_graphic()))
    {
        return Err((
            "codec",
            "must be 1–32 printable ASCII characters".to_owned(),
        ));
    }
    if metrics.jitter_ms.is_none()
        && metrics.latency_ms.is_none()
        && metrics.packet_loss_percent.is_none()
        && metrics.mos.is_none()
    {
        return Err((
            "body",
            "at least one of jitter, latency, packetLoss, mos is required".to_owned(),
        ));
    }
    Ok(())
}

/// Mean opinion score estimated with the simplified ITU-T G.107 E-model, the same estimate the
/// Voice SDKs compute: one-way latency plus twice the jitter plus 10 ms of codec delay, minus
/// 2.5 R points per percent lost.
pub fn estimate_mos(latency_ms: f64, jitter_ms: f64, packet_loss_percent: f64) -> f64 {
    let effective = latency_ms + 2.0 * jitter_ms + 10.0;
    let mut r = if effective < 160.0 {
        93.2 - effective / 40.0
    } else {
        93.2 - (effective - 120.0) / 10.0
    };
    r -= 2.5 * packet_loss_percent;
    let r = r.clamp(0.0, 100.0);
    let mos = 1.0 + 0.035 * r + 0.000_007 * r * (r - 60.0) * (100.0 - r);
    (mos.clamp(1.0, 5.0) * 100.0).round() / 100.0
}

/// Fills in an estimated MOS when the source gave none but gave enough to estimate it.
pub fn with_estimated_mos(mut metrics: Metrics) -> Metrics {
    if metrics.mos.is_none()
        && (metrics.latency_ms.is_some()
            || metrics.jitter_ms.is_some()
            || metrics.packet_loss_percent.is_some())
    {
        metrics.mos = Some(estimate_mos(
            metrics.latency_ms.unwrap_or(0.0),
            metrics.jitter_ms.unwrap_or(0.0),
            metrics.packet_loss_percent.unwrap_or(0.0),
        ));
        metrics.mos_estimated = true;
    }
    metrics
}

/// The average of several samples (each metric over the samples that have it); the codec of
/// the last sample that names one.
pub fn average(samples: &[Metrics]) -> Metrics {
    fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
        let (sum, count) = values.fold((0.0, 0u32), |(s, c), v| (s + v, c + 1));
        (count > 0).then(|| (sum / f64::from(count) * 100.0).round() / 100.0)
    }
    Metrics {
        jitter_ms: mean(samples.iter().filter_map(|s| s.jitter_ms)),
        latency_ms: mean(samples.iter().filter_map(|s| s.latency_ms)),
        packet_loss_percent: mean(samples.iter().filter_map(|s| s.packet_loss_percent)),
        mos: mean(samples.iter().filter_map(|s| s.mos)),
        mos_estimated: samples.iter().any(|s| s.mos_estimated),
        codec: samples.iter().rev().find_map(|s| s.codec.clone()),
    }
}

/// Voice Insights' processing of a call summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryState {
    /// Available within minutes of the call's end; may still change.
    Partial,
    /// Final (up to 30 minutes after the call).
    Complete,
}

/// The metrics of a Voice Insights call summary (`GET /v1/Voice/{CallSid}/Summary`). The edge
/// closest to the rep is used: the Voice SDK's for app calls, else the carrier's (PSTN), the
/// client's, or SIP's. Of its two directions the worse value counts.
pub fn from_summary(summary: &Value) -> Option<(Metrics, SummaryState)> {
    let state = match summary.get("processing_state").and_then(Value::as_str) {
        Some("complete") => SummaryState::Complete,
        _ => SummaryState::Partial,
    };
    let edge = ["sdk_edge", "carrier_edge", "client_edge", "sip_edge"]
        .into_iter()
        .filter_map(|name| summary.get(name))
        .find(|edge| edge.get("metrics").is_some_and(Value::is_object))?;
    let metrics = &edge["metrics"];
    let directions = [&metrics["inbound"], &metrics["outbound"]];
    let stat = |direction: &Value, name: &str| -> Option<f64> {
        let value = direction.get(name)?;
        value
            .as_f64()
            .or_else(|| value.get("avg").and_then(Value::as_f64))
            .or_else(|| value.get("average").and_then(Value::as_f64))
    };
    let worst = |name: &str| {
        directions
            .iter()
            .filter_map(|d| stat(d, name))
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            })
    };
    let lowest = |name: &str| {
        directions
            .iter()
            .filter_map(|d| stat(d, name))
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.min(v)))
            })
    };
    let codec = directions
        .iter()
        .find_map(|d| d.get("codec_name").and_then(Value::as_str))
        .filter(|c| !c.is_empty())
        .map(|c| c.chars().take(32).collect());
    let metrics = Metrics {
        jitter_ms: worst("jitter"),
        latency_ms: worst("latency").or_else(|| worst("rtt")),
        packet_loss_percent: worst("packets_loss_percentage").map(|p| p.clamp(0.0, 100.0)),
        mos: lowest("mos").map(|m| m.clamp(1.0, 5.0)),
        mos_estimated: false,
        codec,
    };
    Some((with_estimated_mos(metrics), state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thresholds_default_to_the_issue_values() {
        let limits = Thresholds::default();
        let good = Metrics {
            jitter_ms: Some(12.5),
            latency_ms: Some(45.0),
            packet_loss_percent: Some(0.2),
            mos: Some(4.2),
            ..Metrics::default()
        };
        assert!(limits.crossed(&good).is_empty());
        let bad = Metrics {
            jitter_ms: Some(31.0),
            packet_loss_percent: Some(3.5),
            mos: Some(3.4),
            ..good
        };
        assert_eq!(limits.crossed(&bad), vec!["mos", "packetLoss", "jitter"]);
    }

    #[test]
    fn the_e_model_estimate_is_sane() {
        let clean = estimate_mos(20.0, 2.0, 0.0);
        assert!(clean > 4.3 && clean <= 4.5, "{clean}");
        let lossy = estimate_mos(150.0, 40.0, 10.0);
        assert!(lossy < 3.5, "{lossy}");
        assert!(estimate_mos(2000.0, 500.0, 100.0) >= 1.0);
    }

    #[test]
    fn a_carrier_summary_gives_metrics_and_an_estimated_mos() {
        let summary = json!({
            "processing_state": "complete",
            "sdk_edge": null,
            "carrier_edge": {"metrics": {
                "inbound": {"codec_name": "pcmu", "packets_loss_percentage": 0.5, "jitter": {"avg": 4.0, "max": 9.0}, "latency": {"avg": 60.0}},
                "outbound": {"codec_name": "pcmu", "packets_loss_percentage": 1.5, "jitter": {"avg": 2.0, "max": 5.0}}
            }}
        });
        let (metrics, state) = from_summary(&summary).unwrap();
        assert_eq!(state, SummaryState::Complete);
        assert_eq!(metrics.jitter_ms, Some(4.0));
        assert_eq!(metrics.packet_loss_percent, Some(1.5));
        assert_eq!(metrics.latency_ms, Some(60.0));
        assert_eq!(metrics.codec.as_deref(), Some("pcmu"));
        assert!(metrics.mos_estimated && metrics.mos.is_some());
        assert!(from_summary(&json!({"processing_state": "partial"})).is_none());
    }

    #[test]
    fn samples_are_averaged() {
        let a = Metrics {
            jitter_ms: Some(10.0),
            mos: Some(4.0),
            codec: Some("opus".to_owned()),
            ..Metrics::default()
        };
        let b = Metrics {
            jitter_ms: Some(20.0),
            packet_loss_percent: Some(1.0),
            ..Metrics::default()
        };
        let avg = average(&[a, b]);
        assert_eq!(avg.jitter_ms, Some(15.0));
        assert_eq!(avg.mos, Some(4.0));
        assert_eq!(avg.packet_loss_percent, Some(1.0));
        assert_eq!(avg.codec.as_deref(), Some("opus"));
    }
}
