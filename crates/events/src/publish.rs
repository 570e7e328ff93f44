//! Publishing straight to JetStream, for producers without an outbox: `switchboard seed` standing
//! in for the CRM, and tests. Services publish through the outbox instead.

use std::collections::BTreeMap;

use async_nats::jetstream;
use uuid::Uuid;

use crate::event::Event;
use crate::headers;
use crate::subject::Namespace;

#[derive(Debug, thiserror::Error)]
#[error("cannot publish {subject}: {reason}")]
pub struct PublishError {
    pub subject: String,
    pub reason: String,
}

/// Publishes `event` with a new id and the standard headers, and waits for the JetStream ack.
pub async fn publish<E: Event>(
    js: &jetstream::Context,
    ns: &Namespace,
    event: &E,
) -> Result<Uuid, PublishError> {
    publish_with_id(js, ns, event, Uuid::now_v7()).await
}

/// Like [`publish`] with a chosen event id (a retry of the same event keeps its id).
pub async fn publish_with_id<E: Event>(
    js: &jetstream::Context,
    ns: &Namespace,
    event: &E,
    id: Uuid,
) -> Result<Uuid, PublishError> {
    let subject = ns.subject(&E::SUBJECT.to_string());
    let fail = |reason: String| PublishError {
        subject: subject.clone(),
        reason,
    };
    let mut map = BTreeMap::new();
    map.insert(headers::MSG_ID.to_owned(), id.to_string());
    map.insert(headers::EVENT_TYPE.to_owned(), E::TYPE.to_owned());
    map.insert(headers::ORG_ID.to_owned(), event.org_id().to_owned());
    map.insert(
        headers::TRACEPARENT.to_owned(),
        headers::new_traceparent(id),
    );
    let ack = js
        .publish_with_headers(
            subject.clone(),
            headers::to_nats(&map),
            event.encode_to_vec().into(),
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
    ack.await.map_err(|e| fail(e.to_string()))?;
    Ok(id)
}
