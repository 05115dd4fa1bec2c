//! Roles and what each may do (SPEC §7).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The role a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Onboardings, signals, dead letters, tasks, stages.
    Operator,
    /// Reads onboardings; lists and completes own tasks.
    Csr,
    /// Reads only.
    Viewer,
    /// Creates and reads onboardings, sends signals.
    Service,
}

/// What a request wants to do, for permission checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read onboardings, their status, audit and events.
    ReadOnboardings,
    /// Create onboardings.
    CreateOnboardings,
    /// Retry and cancel onboardings.
    OperateOnboardings,
    /// Send signals.
    SendSignals,
    /// Read stages, dead letters, templates, services.
    ReadOperations,
    /// Replay/discard dead letters, pause/resume stages.
    Operate,
    /// Read human tasks.
    ReadTasks,
    /// Complete or assign human tasks.
    WorkTasks,
    /// Manage templates, CSRs, webhooks, tokens.
    Administer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Self::Admin,
        Self::Operator,
        Self::Csr,
        Self::Viewer,
        Self::Service,
    ];

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Csr => "csr",
            Self::Viewer => "viewer",
            Self::Service => "service",
        }
    }

    /// Whether this role may do `p`.
    pub fn allows(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Operator => !matches!(p, P::Administer),
            Role::Csr => matches!(p, P::ReadOnboardings | P::ReadTasks | P::WorkTasks),
            Role::Viewer => matches!(p, P::ReadOnboardings | P::ReadOperations | P::ReadTasks),
            Role::Service => matches!(
                p,
                P::ReadOnboardings | P::CreateOnboardings | P::SendSignals
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role `{s}`: use admin, operator, csr, viewer or service")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_the_spec_says() {
        assert!(Role::Admin.allows(Permission::Administer));
        assert!(!Role::Operator.allows(Permission::Administer));
        assert!(Role::Operator.allows(Permission::Operate));
        assert!(Role::Service.allows(Permission::CreateOnboardings));
        assert!(!Role::Service.allows(Permission::OperateOnboardings));
        assert!(!Role::Viewer.allows(Permission::CreateOnboardings));
        assert!(Role::Csr.allows(Permission::WorkTasks));
        assert!(!Role::Csr.allows(Permission::CreateOnboardings));
    }
}
