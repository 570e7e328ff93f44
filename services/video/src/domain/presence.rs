//! Presence derived from LiveKit's sessions. Webhooks arrive at most once and in any order, so
//! nothing here depends on arrival order: a participant's and a call's times are functions of
//! the set of session facts received, and replaying them in any order gives the same result.

use chrono::{DateTime, Utc};

/// One LiveKit connection (participant sid) as far as we know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Opened by the join route rather than reported by LiveKit: counted only while LiveKit
    /// has reported nothing for the participant, so one connection is never counted twice.
    pub api: bool,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
}

/// A participant's presence over all their sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub active: bool,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    pub total_seconds: i32,
}

/// Active while any session has not left; first join; last departure once all have left; the
/// time spent connected, summed over completed sessions.
pub fn presence(sessions: &[Session]) -> Presence {
    let reported: Vec<Session> = sessions.iter().filter(|s| !s.api).cloned().collect();
    let sessions = if reported.is_empty() {
        sessions
    } else {
        &reported[..]
    };
    let active = sessions.iter().any(|s| s.left_at.is_none());
    let joined_at = sessions.iter().filter_map(|s| s.joined_at).min();
    let left_at = if active {
        None
    } else {
        sessions.iter().filter_map(|s| s.left_at).max()
    };
    let total: i64 = sessions
        .iter()
        .filter_map(|s| Some(seconds_between(s.joined_at?, s.left_at?)))
        .sum();
    Presence {
        active,
        joined_at,
        left_at,
        total_seconds: i32::try_from(total).unwrap_or(i32::MAX),
    }
}

/// Whole seconds from `from` to `to`, never negative.
pub fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_seconds().max(0)
}

/// A participant of a call as the completion rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendance {
    pub active: bool,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
}

/// When a call that is not over yet ends: once LiveKit finished the room, or once everyone who
/// joined has left. `None` while it goes on.
pub fn call_end(
    attendance: &[Attendance],
    room_finished_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let everyone_left = !attendance.is_empty() && attendance.iter().all(|a| !a.active);
    if room_finished_at.is_none() && !everyone_left {
        return None;
    }
    end_time(attendance, room_finished_at)
}

/// The end of a finished call: the last departure, or LiveKit's room_finished when nobody's
/// departure is known. Recomputed as late facts arrive, so it converges whatever their order.
pub fn end_time(
    attendance: &[Attendance],
    room_finished_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    attendance
        .iter()
        .filter_map(|a| a.left_at)
        .max()
        .or(room_finished_at)
}

/// The start of a call: its first join.
pub fn start_time(attendance: &[Attendance]) -> Option<DateTime<Utc>> {
    attendance.iter().filter_map(|a| a.joined_at).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).single().unwrap()
    }

    fn session(joined: Option<i64>, left: Option<i64>) -> Session {
        Session {
            api: false,
            joined_at: joined.map(t),
            left_at: left.map(t),
        }
    }

    #[test]
    fn presence_sums_sessions_and_stays_active_while_one_is_open() {
        let closed = presence(&[session(Some(0), Some(60)), session(Some(100), Some(130))]);
        assert_eq!(
            closed,
            Presence {
                active: false,
                joined_at: Some(t(0)),
                left_at: Some(t(130)),
                total_seconds: 90
            }
        );
        let open = presence(&[session(Some(0), Some(60)), session(Some(100), None)]);
        assert!(open.active);
        assert_eq!(open.left_at, None);
        assert_eq!(open.total_seconds, 60);
    }

    #[test]
    fn api_sessions_count_only_until_livekit_reports() {
        let api = Session {
            api: true,
            joined_at: Some(t(0)),
            left_at: None,
        };
        assert!(presence(std::slice::from_ref(&api)).active);
        let reported = presence(&[api, session(Some(3), Some(33))]);
        assert!(!reported.active);
        assert_eq!(reported.total_seconds, 30);
    }

    #[test]
    fn presence_does_not_depend_on_session_order() {
        let mut sessions = vec![
            session(Some(5), Some(50)),
            session(Some(70), Some(90)),
            session(None, Some(95)),
            session(Some(1), None),
        ];
        let expected = presence(&sessions);
        sessions.reverse();
        assert_eq!(presence(&sessions), expected);
        sessions.swap(0, 2);
        assert_eq!(presence(&sessions), expected);
    }

    #[test]
    fn a_call_ends_when_everyone_left_or_the_room_finished() {
        let a = |active, joined, left: Option<i64>| Attendance {
            active,
            joined_at: Some(t(joined)),
            left_at: left.map(t),
        };
        assert_eq!(call_end(&[], None), None);
        assert_eq!(
            call_end(&[a(true, 0, None), a(false, 5, Some(40))], None),
            None
        );
        assert_eq!(
            call_end(&[a(false, 0, Some(60)), a(false, 5, Some(40))], None),
            Some(t(60))
        );
        assert_eq!(call_end(&[a(true, 0, None)], Some(t(300))), Some(t(300)));
        assert_eq!(call_end(&[], Some(t(300))), Some(t(300)));
        assert_eq!(
            start_time(&[a(false, 9, Some(10)), a(false, 3, Some(4))]),
            Some(t(3))
        );
    }
}
