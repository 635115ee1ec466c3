//! What a token may do: its scopes.

use super::AuthError;
use std::fmt;
use std::str::FromStr;

/// Permission carried by a token. [`Scope::Admin`] implies all others of
/// its tenant, but not [`Scope::Operator`]: the powers over the cluster
/// (nodes serve every tenant) are granted apart, by whoever issues tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    PluginsRead,
    PluginsWrite,
    SchedulesRead,
    SchedulesWrite,
    ExecutionsRead,
    ExecutionsWrite,
    SecretsRead,
    SecretsWrite,
    SecretsUse,
    EventsWrite,
    Admin,
    Operator,
}

impl Scope {
    /// Every scope, in canonical order.
    pub const ALL: [Scope; 12] = [
        Scope::PluginsRead,
        Scope::PluginsWrite,
        Scope::SchedulesRead,
        Scope::SchedulesWrite,
        Scope::ExecutionsRead,
        Scope::ExecutionsWrite,
        Scope::SecretsRead,
        Scope::SecretsWrite,
        Scope::SecretsUse,
        Scope::EventsWrite,
        Scope::Admin,
        Scope::Operator,
    ];

    /// Wire form, e.g. `"plugins:read"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PluginsRead => "plugins:read",
            Scope::PluginsWrite => "plugins:write",
            Scope::SchedulesRead => "schedules:read",
            Scope::SchedulesWrite => "schedules:write",
            Scope::ExecutionsRead => "executions:read",
            Scope::ExecutionsWrite => "executions:write",
            Scope::SecretsRead => "secrets:read",
            Scope::SecretsWrite => "secrets:write",
            Scope::SecretsUse => "secrets:use",
            Scope::EventsWrite => "events:write",
            Scope::Admin => "admin",
            Scope::Operator => "operator",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| AuthError::UnknownScope(s.to_owned()))
    }
}

pub(super) const VALID_SCOPES: &str = "plugins:read, plugins:write, schedules:read, schedules:write, \
                            executions:read, executions:write, secrets:read, secrets:write, \
                            secrets:use, events:write, admin, operator";
