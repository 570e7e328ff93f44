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
/// time spent connected over completed sessions (overlaps counted once).
///
/// `segment_start` is when the call's current segment began if it was resumed (`None` for a
/// call that never was).
pub fn presence(sessions: &[Session], segment_start: Option<DateTime<Utc>>) -> Presence {
    let counted: Vec<Session> = sessions
        .iter()
        .filter(|s| !s.api || !superseded(s, sessions, segment_start))
        .cloned()
        .collect();
    let sessions = &counted[..];
    let active = sessions.iter().any(|s| s.left_at.is_none());
    let joined_at = sessions.iter().filter_map(|s| s.joined_at).min();
    let left_at = if active {
        None
    } else {
        sessions.iter().filter_map(|s| s.left_at).max()
    };
    let total = connected_seconds(sessions);
    Presence {
        active,
        joined_at,
        left_at,
        total_seconds: i32::try_from(total).unwrap_or(i32::MAX),
    }
}

/// The time covered by the completed sessions: the union of their intervals, so two devices
/// of one person, or a reconnect that opened before the old connection closed, count once.
fn connected_seconds(sessions: &[Session]) -> i64 {
    let mut intervals: Vec<(DateTime<Utc>, DateTime<Utc>)> = sessions
        .iter()
        .filter_map(|s| Some((s.joined_at?, s.left_at?)))
        .filter(|(from, to)| from < to)
        .collect();
    intervals.sort();
    let mut total = 0;
    let mut current: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for (from, to) in intervals {
        current = match current {
            Some((start, end)) if from <= end => Some((start, end.max(to))),
            Some((start, end)) => {
                total += seconds_between(start, end);
                Some((from, to))
            }
            None => Some((from, to)),
        };
    }
    if let Some((start, end)) = current {
        total += seconds_between(start, end);
    }
    total
}

/// Whether LiveKit reported the connection an API session stood for: any reported session of
/// the segment the API session was opened in. A session reported in an earlier segment of a
/// resumed call does not replace an API session of the current one.
fn superseded(api: &Session, sessions: &[Session], segment_start: Option<DateTime<Utc>>) -> bool {
    let current = segment_start.filter(|start| api.joined_at.is_some_and(|at| at >= *start));
    sessions
        .iter()
        .filter(|s| !s.api)
        .any(|reported| match current {
            None => true,
            Some(start) => reported.joined_at.is_none_or(|at| at >= start),
        })
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
        let closed = presence(
            &[session(Some(0), Some(60)), session(Some(100), Some(130))],
            None,
        );
        assert_eq!(
            closed,
            Presence {
                active: false,
                joined_at: Some(t(0)),
                left_at: Some(t(130)),
                total_seconds: 90
            }
        );
        let open = presence(
            &[session(Some(0), Some(60)), session(Some(100), None)],
            None,
        );
        assert!(open.active);
        assert_eq!(open.left_at, None);
        assert_eq!(open.total_seconds, 60);
    }

    #[test]
    fn overlapping_sessions_of_one_participant_count_once() {
        let total = |sessions: &[Session]| presence(sessions, None).total_seconds;
        // Two devices, 0–60 and 30–90: connected 90 s, not 120.
        assert_eq!(
            total(&[session(Some(0), Some(60)), session(Some(30), Some(90))]),
            90
        );
        // A reconnect inside the old connection's life adds nothing.
        assert_eq!(
            total(&[session(Some(0), Some(100)), session(Some(10), Some(20))]),
            100
        );
        // Touching, then a gap: 0–60 + 60–80, 100–110.
        assert_eq!(
            total(&[
                session(Some(100), Some(110)),
                session(Some(60), Some(80)),
                session(Some(0), Some(60)),
            ]),
            90
        );
        // Open and backwards sessions add nothing.
        assert_eq!(
            total(&[
                session(Some(0), Some(10)),
                session(Some(5), None),
                session(Some(50), Some(40))
            ]),
            10
        );
    }

    #[test]
    fn api_sessions_count_only_until_livekit_reports() {
        let api = Session {
            api: true,
            joined_at: Some(t(0)),
            left_at: None,
        };
        assert!(presence(std::slice::from_ref(&api), None).active);
        let reported = presence(&[api, session(Some(3), Some(33))], None);
        assert!(!reported.active);
        assert_eq!(reported.total_seconds, 30);
    }

    #[test]
    fn an_api_session_of_a_resumed_segment_counts_until_livekit_reports_it() {
        // A resumed call: LiveKit reported 0–60 in the first segment; the second began at 100
        // and the join route opened a session then. The first segment's API session (opened
        // at 0, never closed) was replaced by the report and stays so.
        let api = |at| Session {
            api: true,
            joined_at: Some(t(at)),
            left_at: None,
        };
        let sessions = [session(Some(1), Some(60)), api(0), api(100)];
        let resumed = presence(&sessions, Some(t(100)));
        assert!(resumed.active);
        assert_eq!(resumed.total_seconds, 59);
        // LiveKit reports the new connection: it replaces the second API session.
        let mut reported = sessions.to_vec();
        reported.push(session(Some(101), Some(131)));
        let done = presence(&reported, Some(t(100)));
        assert!(!done.active);
        assert_eq!(done.total_seconds, 89);
        // Without the segment (a call never resumed), any report replaces every API session.
        assert!(!presence(&sessions, None).active);
    }

    #[test]
    fn presence_does_not_depend_on_session_order() {
        let mut sessions = vec![
            session(Some(5), Some(50)),
            session(Some(70), Some(90)),
            session(None, Some(95)),
            session(Some(1), None),
        ];
        let expected = presence(&sessions, None);
        sessions.reverse();
        assert_eq!(presence(&sessions, None), expected);
        sessions.swap(0, 2);
        assert_eq!(presence(&sessions, None), expected);
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
