//! Names of the keys and channels under one `key_prefix` (table in the module docs).

use fleetwire_actors::model::TenantId;

/// Key and channel names of one deployment.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The tenant's replay log (a stream).
    pub(crate) fn log(&self, tenant: &TenantId) -> String {
        format!("{}:t:{tenant}:log", self.prefix)
    }

    /// The tenant's pub/sub channel.
    pub(crate) fn channel(&self, tenant: &TenantId) -> String {
        format!("{}:t:{tenant}:updates", self.prefix)
    }

    /// The set of tenants that ever published.
    pub(crate) fn tenants(&self) -> String {
        format!("{}:tenants", self.prefix)
    }

    /// `PSUBSCRIBE` pattern matching every tenant's channel. Glob characters in the prefix
    /// are escaped; tenant ids cannot contain any (`TenantId::parse`), so `*` matches
    /// exactly one tenant id.
    pub(crate) fn pattern(&self) -> String {
        let mut escaped = String::with_capacity(self.prefix.len() + 12);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        escaped.push_str(":t:*:updates");
        escaped
    }

    /// The tenant a channel name belongs to, if it is one of ours.
    pub(crate) fn tenant_of_channel(&self, channel: &str) -> Option<TenantId> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(":t:")?;
        TenantId::parse(rest.strip_suffix(":updates")?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_pattern() {
        let keys = Keys::new("fw:a*b");
        let t = TenantId::parse("acme").unwrap();
        assert_eq!(keys.log(&t), "fw:a*b:t:acme:log");
        assert_eq!(keys.channel(&t), "fw:a*b:t:acme:updates");
        assert_eq!(keys.tenants(), "fw:a*b:tenants");
        assert_eq!(keys.pattern(), r"fw:a\*b:t:*:updates");
        assert_eq!(keys.tenant_of_channel("fw:a*b:t:acme:updates"), Some(t));
        assert_eq!(keys.tenant_of_channel("fw:a*b:t:a:b:updates"), None);
        assert_eq!(keys.tenant_of_channel("other:t:acme:updates"), None);
    }
}
