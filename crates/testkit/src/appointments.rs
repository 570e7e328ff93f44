//! Appointments in the read model, as the CRM projector writes them.

use chrono::{DateTime, Utc};
use sb_db::models::{AppointmentKind, AppointmentStatus, NewAppointment, upsert_appointment};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TestAppointment {
    pub id: Uuid,
    pub org: Uuid,
    pub host: Uuid,
    pub guest: Option<Uuid>,
    pub setter: Option<Uuid>,
    pub team: Option<Uuid>,
    pub scheduled_at: DateTime<Utc>,
    pub status: AppointmentStatus,
    /// The CRM's lead: the patient or prospect the appointment is with.
    pub lead: serde_json::Value,
}

impl TestAppointment {
    /// A remote appointment of `host` in `org`, starting now, for 45 minutes.
    pub fn new(org: Uuid, host: Uuid) -> Self {
        Self {
            id: Uuid::now_v7(),
            org,
            host,
            guest: None,
            setter: None,
            team: None,
            scheduled_at: Utc::now(),
            status: AppointmentStatus::Scheduled,
            lead: serde_json::json!({
                "name": "Lead Person",
                "phone": "+33612345678",
                "email": "lead@example.test",
            }),
        }
    }

    pub fn with_guest(mut self, guest: Uuid) -> Self {
        self.guest = Some(guest);
        self
    }

    pub fn with_lead(mut self, lead: serde_json::Value) -> Self {
        self.lead = lead;
        self
    }

    pub fn in_team(mut self, team: Uuid) -> Self {
        self.team = Some(team);
        self
    }

    pub fn row(&self) -> NewAppointment {
        NewAppointment {
            id: self.id,
            org_id: self.org,
            host_user_id: self.host,
            guest_user_id: self.guest,
            setter_user_id: self.setter,
            team_id: self.team,
            lead: self.lead.clone(),
            scheduled_at: self.scheduled_at,
            ends_at: Some(self.scheduled_at + chrono::Duration::minutes(45)),
            kind: AppointmentKind::Remote,
            status: self.status,
            version: 1,
        }
    }

    /// The appointment as the CRM publishes it, at `version` with `status` (no end time).
    pub fn crm(
        &self,
        version: i64,
        status: sb_events::proto::AppointmentStatus,
    ) -> sb_events::proto::Appointment {
        let id = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
        let lead = |field: &str| self.lead[field].as_str().unwrap_or_default().to_owned();
        sb_events::proto::Appointment {
            id: self.id.to_string(),
            org_id: self.org.to_string(),
            host_user_id: self.host.to_string(),
            guest_user_id: id(self.guest),
            setter_user_id: id(self.setter),
            team_id: id(self.team),
            lead: Some(sb_events::proto::Lead {
                name: lead("name"),
                phone: lead("phone"),
                email: lead("email"),
            }),
            scheduled_at_unix_ms: self.scheduled_at.timestamp_millis(),
            ends_at_unix_ms: 0,
            kind: sb_events::proto::AppointmentKind::Remote as i32,
            status: status as i32,
            version,
        }
    }

    /// Writes it into `db`'s read model; returns its id.
    pub async fn insert(&self, db: &crate::TestDb) -> crate::Result<Uuid> {
        let mut conn = db.conn().await?;
        upsert_appointment(&mut conn, &self.row()).await?;
        Ok(self.id)
    }
}
