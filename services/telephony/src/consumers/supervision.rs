//! `sb.monitoring.session.>` (durable `telephony-supervision`): supervision sessions of phone
//! calls, applied to the calls' conferences (`actions::supervision`).

use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;
use sb_events::consumer::{ConsumerConfig, Handler, HandlerError};
use sb_events::{Domain, EventEnvelope};

use crate::actions::supervision;
use crate::state::AppState;

pub fn consumer() -> ConsumerConfig {
    ConsumerConfig::new(
        crate::SERVICE,
        "supervision",
        Domain::Monitoring,
        "sb.monitoring.session.>",
    )
}

pub struct Supervision {
    pub state: AppState,
}

impl Handler for Supervision {
    fn handle<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let outcome = supervision::apply(&self.state, conn, event).await?;
            tracing::debug!(event.id = %event.id, outcome, "supervision event");
            Ok(())
        })
    }
}
