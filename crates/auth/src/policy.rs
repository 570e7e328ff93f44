//! Access rules shared by every service (ARCHITECTURE.md, "Auth"). Pure functions: services load
//! the facts, the policy decides.

use crate::ids::{OrgId, TeamId, UserId};
use crate::principal::{Principal, Role};

/// The facts about an appointment that decide who may access it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppointmentAccess {
    pub org_id: OrgId,
    pub team_id: Option<TeamId>,
    pub host_user_id: UserId,
    pub guest_user_id: Option<UserId>,
    pub setter_user_id: Option<UserId>,
}

/// ADMIN always; otherwise same org and one of: CEO/DIRECTOR; a MANAGER of the appointment's team;
/// the host; the guest user; the SETTER who qualified the lead.
pub fn can_access_appointment(principal: &Principal, appointment: &AppointmentAccess) -> bool {
    if principal.role == Role::Admin {
        return true;
    }
    if principal.org_id != appointment.org_id {
        return false;
    }
    let me = principal.user_id;
    match principal.role {
        Role::Admin | Role::Ceo | Role::Director => true,
        Role::Manager
            if appointment
                .team_id
                .is_some_and(|team| principal.is_in_team(team)) =>
        {
            true
        }
        Role::Setter if appointment.setter_user_id == Some(me) => true,
        _ => appointment.host_user_id == me || appointment.guest_user_id == Some(me),
    }
}

/// The facts about a sales rep that decide who may monitor them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoredRep {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub role: Role,
    pub teams: Vec<TeamId>,
}

/// Only CLOSER and SETTER are monitorable, never by themselves. ADMIN: any org; CEO/DIRECTOR:
/// their org; MANAGER: reps sharing one of their teams in their org.
pub fn can_monitor(supervisor: &Principal, rep: &MonitoredRep) -> bool {
    if !rep.role.is_rep() || supervisor.user_id == rep.user_id {
        return false;
    }
    match supervisor.role {
        Role::Admin => true,
        Role::Ceo | Role::Director => supervisor.org_id == rep.org_id,
        Role::Manager => {
            supervisor.org_id == rep.org_id && rep.teams.iter().any(|t| supervisor.is_in_team(*t))
        }
        Role::Closer | Role::Setter | Role::Member => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn id<T: From<Uuid>>(n: u128) -> T {
        T::from(Uuid::from_u128(n))
    }

    /// How the caller relates to the appointment.
    #[derive(Debug, Clone, Copy)]
    enum Relation {
        None,
        Host,
        Guest,
        Setter,
        /// Caller's teams contain the appointment's team.
        TeamMember,
    }
    const RELATIONS: [Relation; 5] = [
        Relation::None,
        Relation::Host,
        Relation::Guest,
        Relation::Setter,
        Relation::TeamMember,
    ];

    fn scenario(role: Role, relation: Relation, same_org: bool) -> (Principal, AppointmentAccess) {
        let me: UserId = id(1);
        let caller_org: OrgId = id(10);
        let appointment_org: OrgId = if same_org { caller_org } else { id(11) };
        let team: TeamId = id(20);
        let principal = Principal {
            user_id: me,
            org_id: caller_org,
            role,
            teams: if matches!(relation, Relation::TeamMember) {
                vec![id(21), team]
            } else {
                vec![id(21)]
            },
            name: None,
        };
        let appointment = AppointmentAccess {
            org_id: appointment_org,
            team_id: Some(team),
            host_user_id: if matches!(relation, Relation::Host) {
                me
            } else {
                id(2)
            },
            guest_user_id: Some(if matches!(relation, Relation::Guest) {
                me
            } else {
                id(3)
            }),
            setter_user_id: Some(if matches!(relation, Relation::Setter) {
                me
            } else {
                id(4)
            }),
        };
        (principal, appointment)
    }

    #[test]
    fn appointment_access_every_role_relation_and_org() {
        // Columns follow RELATIONS: none, host, guest, setter, team member.
        const T: bool = true;
        const F: bool = false;
        let table: [(Role, [bool; 5], [bool; 5]); 7] = [
            //                  same org            other org
            (Role::Admin, [T, T, T, T, T], [T, T, T, T, T]),
            (Role::Ceo, [T, T, T, T, T], [F, F, F, F, F]),
            (Role::Director, [T, T, T, T, T], [F, F, F, F, F]),
            (Role::Manager, [F, T, T, F, T], [F, F, F, F, F]),
            (Role::Closer, [F, T, T, F, F], [F, F, F, F, F]),
            (Role::Setter, [F, T, T, T, F], [F, F, F, F, F]),
            (Role::Member, [F, T, T, F, F], [F, F, F, F, F]),
        ];
        let mut checked = 0;
        for (role, same, other) in table {
            for (i, relation) in RELATIONS.into_iter().enumerate() {
                for (same_org, expected) in [(true, same[i]), (false, other[i])] {
                    let (principal, appointment) = scenario(role, relation, same_org);
                    assert_eq!(
                        can_access_appointment(&principal, &appointment),
                        expected,
                        "{role} {relation:?} same_org={same_org}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, Role::ALL.len() * RELATIONS.len() * 2);
    }

    #[test]
    fn manager_without_team_on_appointment_is_denied() {
        let (principal, mut appointment) = scenario(Role::Manager, Relation::TeamMember, true);
        appointment.team_id = None;
        assert!(!can_access_appointment(&principal, &appointment));
    }

    #[test]
    fn monitoring_every_supervisor_rep_team_and_org() {
        const T: bool = true;
        const F: bool = false;
        // For each supervisor role: [rep role][shares a team][same org]
        // rep roles in Role::ALL order; columns: (team, same org), (team, other org),
        // (no team, same org), (no team, other org).
        let expected = |supervisor: Role, rep: Role| -> [bool; 4] {
            match (supervisor, rep.is_rep()) {
                (_, false) => [F, F, F, F],
                (Role::Admin, true) => [T, T, T, T],
                (Role::Ceo | Role::Director, true) => [T, F, T, F],
                (Role::Manager, true) => [T, F, F, F],
                _ => [F, F, F, F],
            }
        };
        let mut checked = 0;
        for supervisor_role in Role::ALL {
            for rep_role in Role::ALL {
                let cells = expected(supervisor_role, rep_role);
                let cases = [(true, true), (true, false), (false, true), (false, false)];
                for ((shares_team, same_org), want) in cases.into_iter().zip(cells) {
                    let supervisor = Principal {
                        user_id: id(1),
                        org_id: id(10),
                        role: supervisor_role,
                        teams: vec![id(20)],
                        name: None,
                    };
                    let rep = MonitoredRep {
                        user_id: id(2),
                        org_id: if same_org { id(10) } else { id(11) },
                        role: rep_role,
                        teams: if shares_team {
                            vec![id(20)]
                        } else {
                            vec![id(22)]
                        },
                    };
                    assert_eq!(
                        can_monitor(&supervisor, &rep),
                        want,
                        "{supervisor_role} monitoring {rep_role} team={shares_team} same_org={same_org}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 7 * 7 * 4);
    }

    #[test]
    fn nobody_monitors_themselves() {
        let me = Principal {
            user_id: id(1),
            org_id: id(10),
            role: Role::Admin,
            teams: vec![],
            name: None,
        };
        let rep = MonitoredRep {
            user_id: id(1),
            org_id: id(10),
            role: Role::Closer,
            teams: vec![],
        };
        assert!(!can_monitor(&me, &rep));
    }
}
