//! NATS headers carrying event metadata: `Nats-Msg-Id` (event id, JetStream de-duplication),
//! `Sb-Event-Type`, `Sb-Org-Id`, `traceparent` (W3C trace context).

use std::collections::BTreeMap;

pub const MSG_ID: &str = "Nats-Msg-Id";
pub const EVENT_TYPE: &str = "Sb-Event-Type";
pub const ORG_ID: &str = "Sb-Org-Id";
pub const TRACEPARENT: &str = "traceparent";

/// A new W3C `traceparent` (version 00, sampled) whose trace id is the event id, so a trace can be
/// found from an event id and vice versa when no caller trace is propagated.
pub fn new_traceparent(event_id: uuid::Uuid) -> String {
    let span: u64 = rand_span_id();
    format!("00-{}-{span:016x}-01", event_id.simple())
}

fn rand_span_id() -> u64 {
    // Span ids need only be unique within the trace; the v4 generator is a fine source.
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut span = [0u8; 8];
    span.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(span).max(1)
}

/// Whether a `traceparent` value is well-formed (propagated ones come from callers).
pub fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    parts.len() == 4
        && parts[0].len() == 2
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts[3].len() == 2
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

/// Headers as stored in the outbox (JSON object of strings) and sent to NATS.
pub fn to_nats(headers: &BTreeMap<String, String>) -> async_nats::HeaderMap {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.insert(name.as_str(), value.as_str());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_well_formed() {
        let id = uuid::Uuid::now_v7();
        let tp = new_traceparent(id);
        assert!(is_valid_traceparent(&tp), "{tp}");
        assert!(tp.contains(&id.simple().to_string()));
        assert!(!is_valid_traceparent(
            "00-00000000000000000000000000000000-0000000000000001-01"
        ));
        assert!(!is_valid_traceparent("garbage"));
    }
}
