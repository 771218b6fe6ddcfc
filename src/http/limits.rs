//! Per-node and per-tenant limits on open SSE connections.
//!
//! A connection holds a [`ConnectionPermit`] for as long as its response body exists;
//! dropping the body (the client left, or the node closed the stream) releases it. The
//! counts are kept under one mutex: taken twice per connection, never per event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fleetwire_actors::model::TenantId;
use fleetwire_actors::telemetry::{SSE_CONNECTIONS_OPEN, SSE_REJECTED_TOTAL};

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The tenant already has `limit` open connections on this node (429).
    #[error("the tenant already has {limit} open streams on this node")]
    Tenant {
        /// The per-tenant limit.
        limit: usize,
    },
    /// The node already has `limit` open connections (503: another node may have room).
    #[error("this node already serves {limit} streams")]
    Node {
        /// The per-node limit.
        limit: usize,
    },
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_tenant: HashMap<TenantId, usize>,
}

/// The limits and the open connections they count. Cheap to clone; clones share counts.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    open: Arc<Mutex<Open>>,
    per_node: usize,
    per_tenant: usize,
}

impl ConnectionLimits {
    /// Limits of `per_node` connections in all and `per_tenant` for any one tenant.
    pub fn new(per_node: usize, per_tenant: usize) -> Self {
        Self {
            open: Arc::default(),
            per_node,
            per_tenant,
        }
    }

    /// Counts a new connection of `tenant`, or says which limit it would break (the
    /// tenant's first: a tenant over its own limit is told so even when the node is full).
    pub fn acquire(&self, tenant: &TenantId) -> Result<ConnectionPermit, LimitError> {
        let mut open = self.lock();
        let mine = open.per_tenant.get(tenant).copied().unwrap_or(0);
        let refused = if mine >= self.per_tenant {
            Some((
                LimitError::Tenant {
                    limit: self.per_tenant,
                },
                "tenant_limit",
            ))
        } else if open.total >= self.per_node {
            Some((LimitError::Node { limit: self.per_node }, "node_limit"))
        } else {
            None
        };
        if let Some((error, reason)) = refused {
            metrics::counter!(SSE_REJECTED_TOTAL, "reason" => reason).increment(1);
            return Err(error);
        }
        open.total += 1;
        *open.per_tenant.entry(tenant.clone()).or_default() += 1;
        metrics::gauge!(SSE_CONNECTIONS_OPEN).set(open.total as f64);
        Ok(ConnectionPermit {
            limits: self.clone(),
            tenant: tenant.clone(),
        })
    }

    /// Open connections: in all, and of `tenant`.
    pub fn open(&self, tenant: &TenantId) -> (usize, usize) {
        let open = self.lock();
        (open.total, open.per_tenant.get(tenant).copied().unwrap_or(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().expect("limits lock never poisoned")
    }
}

/// One counted connection; releases its place when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: ConnectionLimits,
    tenant: TenantId,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.limits.lock();
        open.total -= 1;
        if let Some(n) = open.per_tenant.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                open.per_tenant.remove(&self.tenant);
            }
        }
        metrics::gauge!(SSE_CONNECTIONS_OPEN).set(open.total as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_then_node_limits() {
        let limits = ConnectionLimits::new(3, 2);
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let a1 = limits.acquire(&a).unwrap();
        let _a2 = limits.acquire(&a).unwrap();
        assert_eq!(limits.acquire(&a).unwrap_err(), LimitError::Tenant { limit: 2 });
        let _b1 = limits.acquire(&b).unwrap();
        assert_eq!(limits.acquire(&b).unwrap_err(), LimitError::Node { limit: 3 });
        assert_eq!(
            limits.acquire(&a).unwrap_err(),
            LimitError::Tenant { limit: 2 },
            "the tenant's own limit is named first"
        );
        drop(a1);
        assert_eq!(limits.open(&a), (2, 1));
        let _b2 = limits.acquire(&b).unwrap();
        assert_eq!(limits.open(&b), (3, 2));
    }
}
