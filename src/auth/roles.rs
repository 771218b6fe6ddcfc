//! Roles and the authenticated caller.

use std::fmt;

use fleetwire_actors::model::TenantId;
use serde::{Deserialize, Serialize};

/// What a caller may do inside its tenant. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Reads vehicles, history and the live stream.
    #[serde(rename = "viewer")]
    Viewer,
    /// Also manages geofences and alert rules.
    #[serde(rename = "operator")]
    Operator,
    /// Also provisions vehicles, manages ingest API keys, replays dead letters and
    /// resolves VINs.
    #[serde(rename = "tenant-admin")]
    TenantAdmin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::TenantAdmin];

    /// The group / claim name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::TenantAdmin => "tenant-admin",
        }
    }

    /// The role a group name grants, if any.
    pub fn from_group(group: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == group)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller of the public API: whose data it may touch and how.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant every read and write of this request is confined to.
    pub tenant: TenantId,
    /// Who (the token's `sub`), for the audit log.
    pub subject: String,
    /// The highest role granted, `None` when the token grants none.
    pub role: Option<Role>,
    /// When the credential expires (Unix seconds); long-lived streams end then.
    pub expires_at: u64,
}

impl Caller {
    /// Whether the caller holds `role` (or a higher one).
    pub fn has(&self, role: Role) -> bool {
        self.role.is_some_and(|mine| mine >= role)
    }
}

impl fmt::Debug for Caller {
    // Deliberately the same as derived output: a caller holds no secret. Kept explicit so
    // adding a credential field later forces a decision here.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("tenant", &self.tenant)
            .field("subject", &self.subject)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_lower_ones() {
        let caller = |role| Caller {
            tenant: TenantId::default(),
            subject: "s".into(),
            role,
            expires_at: 0,
        };
        assert!(caller(Some(Role::TenantAdmin)).has(Role::Viewer));
        assert!(caller(Some(Role::Operator)).has(Role::Operator));
        assert!(!caller(Some(Role::Operator)).has(Role::TenantAdmin));
        assert!(!caller(None).has(Role::Viewer));
        assert_eq!(Role::from_group("tenant-admin"), Some(Role::TenantAdmin));
        assert_eq!(Role::from_group("admins"), None);
    }
}
