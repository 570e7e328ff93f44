//! Who is calling: the verified claims of a platform JWT.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{OrgId, TeamId, UserId};

/// Platform roles, as the auth service writes them in the `role` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Platform staff: every org.
    Admin,
    /// Whole org.
    Ceo,
    /// Whole org.
    Director,
    /// Their teams.
    Manager,
    /// Sales rep who runs appointments.
    Closer,
    /// Sales rep who qualifies leads.
    Setter,
    /// Anyone else with an account (a practitioner, a patient).
    Member,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::Ceo,
        Role::Director,
        Role::Manager,
        Role::Closer,
        Role::Setter,
        Role::Member,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Ceo => "CEO",
            Role::Director => "DIRECTOR",
            Role::Manager => "MANAGER",
            Role::Closer => "CLOSER",
            Role::Setter => "SETTER",
            Role::Member => "MEMBER",
        }
    }

    /// Supervisors may monitor reps (team-scoped for managers).
    pub fn is_supervisor(self) -> bool {
        matches!(
            self,
            Role::Admin | Role::Ceo | Role::Director | Role::Manager
        )
    }

    /// Sales reps: the ones supervisors may monitor.
    pub fn is_rep(self) -> bool {
        matches!(self, Role::Closer | Role::Setter)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown role {s:?} (expected one of ADMIN, CEO, DIRECTOR, MANAGER, CLOSER, SETTER, MEMBER)"))
    }
}

/// The JWT payload the platform's auth service issues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub org: OrgId,
    pub role: Role,
    #[serde(default)]
    pub teams: Vec<TeamId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub iss: String,
    pub aud: String,
    /// Seconds since the Unix epoch.
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
}

/// An authenticated caller. A handler that takes a `Principal` is authenticated by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub role: Role,
    pub teams: Vec<TeamId>,
    pub name: Option<String>,
}

impl Principal {
    pub fn is_in_team(&self, team: TeamId) -> bool {
        self.teams.contains(&team)
    }
}

impl From<Claims> for Principal {
    fn from(claims: Claims) -> Self {
        Self {
            user_id: claims.sub,
            org_id: claims.org,
            role: claims.role,
            teams: claims.teams,
            name: claims.name,
        }
    }
}
