//! When the follow-up job looks at a call again: exponential backoff from a first delay, capped.

use std::time::Duration;

/// Longest wait between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 60);

/// Delay before attempt `attempt + 1` (0-based): `first`, 2×, 4×… up to [`MAX_DELAY`].
pub fn delay(first: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
    first.saturating_mul(factor).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps() {
        let first = Duration::from_secs(30);
        assert_eq!(delay(first, 0), first);
        assert_eq!(delay(first, 1), Duration::from_secs(60));
        assert_eq!(delay(first, 3), Duration::from_secs(240));
        assert_eq!(delay(first, 40), MAX_DELAY);
        assert_eq!(delay(Duration::ZERO, 5), Duration::ZERO);
    }
}
