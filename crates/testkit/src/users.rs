//! Users as their JWTs describe them, for service tests.

use sb_auth::{OrgId, Principal, Role, TeamId, UserId};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub org: Uuid,
    pub role: Role,
    pub teams: Vec<Uuid>,
    pub name: String,
}

impl TestUser {
    /// A new user of `org` with `role`, in no team.
    pub fn new(org: Uuid, role: Role) -> Self {
        Self {
            id: Uuid::now_v7(),
            org,
            role,
            teams: Vec::new(),
            name: format!(
                "{} {}",
                role.as_str(),
                &Uuid::now_v7().simple().to_string()[24..]
            ),
        }
    }

    pub fn in_team(mut self, team: Uuid) -> Self {
        self.teams.push(team);
        self
    }

    pub fn principal(&self) -> Principal {
        Principal {
            user_id: UserId::from(self.id),
            org_id: OrgId::from(self.org),
            role: self.role,
            teams: self.teams.iter().copied().map(TeamId::from).collect(),
            name: Some(self.name.clone()),
        }
    }
}
