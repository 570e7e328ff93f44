//! Call statistics (seed 000's dashboard TODO), computed from one row per call.

use std::collections::BTreeMap;

use crate::domain::call::CallStatus;

/// One call as the statistics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSample {
    pub status: CallStatus,
    pub duration_seconds: Option<i32>,
    pub recorded: bool,
    pub participants: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallStats {
    pub count: u64,
    /// Mean duration of calls that have one (completed calls), in seconds.
    pub average_duration_seconds: Option<f64>,
    /// 90th percentile (nearest rank) of those durations.
    pub p90_duration_seconds: Option<i64>,
    /// Completed calls over calls that are over (completed, failed, cancelled); null if none is.
    pub completion_rate: Option<f64>,
    /// Mean number of people who joined, over all calls.
    pub average_participants: Option<f64>,
    /// Share of calls that were recorded (or tried to be).
    pub recording_rate: Option<f64>,
    /// Count per status; every status is present.
    pub by_status: BTreeMap<String, u64>,
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
    (whole > 0).then(|| part as f64 / whole as f64)
}

pub fn compute(samples: &[CallSample]) -> CallStats {
    let count = samples.len() as u64;
    let mut by_status: BTreeMap<String, u64> = CallStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    for sample in samples {
        *by_status
            .entry(sample.status.as_str().to_owned())
            .or_default() += 1;
    }
    let mut durations: Vec<i64> = samples
        .iter()
        .filter_map(|s| s.duration_seconds.map(i64::from))
        .collect();
    durations.sort_unstable();
    let p90 = (!durations.is_empty()).then(|| {
        // Nearest rank: the smallest value with at least 90 % of the samples at or below it.
        let rank = (durations.len() * 9).div_ceil(10).max(1);
        durations[rank - 1]
    });
    let count_of =
        |status: CallStatus| samples.iter().filter(|s| s.status == status).count() as u64;
    let completed = count_of(CallStatus::Completed);
    let over = completed + count_of(CallStatus::Failed) + count_of(CallStatus::Cancelled);
    let total_duration: i64 = durations.iter().sum();
    let total_participants: i64 = samples.iter().map(|s| s.participants).sum();
    let recorded = samples.iter().filter(|s| s.recorded).count() as u64;
    CallStats {
        count,
        average_duration_seconds: ratio(
            u64::try_from(total_duration).unwrap_or(0),
            durations.len() as u64,
        ),
        p90_duration_seconds: p90,
        completion_rate: ratio(completed, over),
        average_participants: ratio(u64::try_from(total_participants).unwrap_or(0), count),
        recording_rate: ratio(recorded, count),
        by_status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        status: CallStatus,
        duration: Option<i32>,
        recorded: bool,
        participants: i64,
    ) -> CallSample {
        CallSample {
            status,
            duration_seconds: duration,
            recorded,
            participants,
        }
    }

    #[test]
    fn empty_input_gives_zero_counts_and_no_rates() {
        let stats = compute(&[]);
        assert_eq!(stats.count, 0);
        assert_eq!(stats.average_duration_seconds, None);
        assert_eq!(stats.p90_duration_seconds, None);
        assert_eq!(stats.completion_rate, None);
        assert_eq!(stats.by_status.len(), 5);
        assert!(stats.by_status.values().all(|n| *n == 0));
    }

    #[test]
    fn percentiles_rates_and_means() {
        let mut samples: Vec<_> = (1..=10)
            .map(|i| sample(CallStatus::Completed, Some(i * 60), i % 2 == 0, 2))
            .collect();
        samples.push(sample(CallStatus::Cancelled, None, false, 0));
        samples.push(sample(CallStatus::Ongoing, None, false, 1));
        let stats = compute(&samples);
        assert_eq!(stats.count, 12);
        assert_eq!(stats.p90_duration_seconds, Some(540));
        assert_eq!(stats.average_duration_seconds, Some(330.0));
        assert_eq!(stats.completion_rate, Some(10.0 / 11.0));
        assert_eq!(stats.average_participants, Some(21.0 / 12.0));
        assert_eq!(stats.recording_rate, Some(5.0 / 12.0));
        assert_eq!(stats.by_status["COMPLETED"], 10);
        assert_eq!(stats.by_status["PENDING"], 0);
    }
}
