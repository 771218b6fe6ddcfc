//! SSE stream tickets. Browsers' `EventSource` cannot send an `Authorization` header, and a
//! bearer token in a URL ends up in proxy and access logs. So a caller with a token asks
//! `POST /v1/stream-tickets` for a ticket: good only for `GET /v1/stream`, only for the
//! caller's tenant and role, and only for `auth.ticket_ttl_secs` (60 s by default). A
//! leaked ticket is worth one minute of read access to one tenant's live stream.
//!
//! Format: `base64url(claims JSON) "." base64url(HMAC-SHA256(key, "fleetwire-stream-ticket." claims))`.
//! Stateless, so any node holding the same `auth.ticket_key` accepts it; within its
//! lifetime it may be used more than once, which `EventSource`'s automatic reconnects need.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fleetwire_actors::model::TenantId;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{AuthError, Caller, Role};

/// Domain separation: a ticket MAC can never be mistaken for another use of the key.
const CONTEXT: &[u8] = b"fleetwire-stream-ticket.";
/// The only purpose a ticket has.
const PURPOSE: &str = "stream";
/// Longest ticket accepted (a real one is about 250 bytes).
const MAX_TICKET_LEN: usize = 1024;

/// What a ticket says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketClaims {
    /// Purpose; always `stream`.
    p: String,
    /// Tenant.
    t: TenantId,
    /// Subject.
    s: String,
    /// Role.
    r: Role,
    /// Ticket expiry (Unix seconds).
    exp: u64,
    /// Expiry of the token the ticket was issued for: the stream ends then.
    sx: u64,
}

/// Issues and checks stream tickets with one HMAC key.
pub struct TicketIssuer {
    key: Vec<u8>,
    ttl_secs: u64,
}

/// Parses a hex key of at least 32 bytes.
pub fn parse_key(hex: &str) -> Result<Vec<u8>, String> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be hex".to_owned());
    }
    let key: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
        .collect();
    if key.len() < 32 {
        return Err("must be at least 32 bytes (64 hex digits)".to_owned());
    }
    Ok(key)
}

impl TicketIssuer {
    /// An issuer with `key` (see [`parse_key`]) and tickets living `ttl_secs`.
    pub fn new(key: Vec<u8>, ttl_secs: u64) -> Self {
        Self { key, ttl_secs }
    }

    /// An issuer with a random key: tickets then work only on this process.
    pub fn random(ttl_secs: u64) -> Self {
        Self::new(rand::random::<[u8; 32]>().to_vec(), ttl_secs)
    }

    /// Lifetime of new tickets in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    fn mac(&self, claims: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(CONTEXT);
        mac.update(claims);
        mac
    }

    /// A ticket for `caller`, expiring at `now + ttl` (never after the caller's token).
    pub fn issue(&self, caller: &Caller, now: u64) -> Result<(String, u64), AuthError> {
        let role = caller
            .role
            .ok_or_else(|| AuthError::Forbidden("a stream ticket needs the viewer role".to_owned()))?;
        let exp = (now + self.ttl_secs).min(caller.expires_at);
        let claims = TicketClaims {
            p: PURPOSE.to_owned(),
            t: caller.tenant.clone(),
            s: caller.subject.clone(),
            r: role,
            exp,
            sx: caller.expires_at,
        };
        let json = serde_json::to_vec(&claims).expect("ticket claims serialize");
        let tag = self.mac(&json).finalize().into_bytes();
        Ok((
            format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(&json),
                URL_SAFE_NO_PAD.encode(tag)
            ),
            exp,
        ))
    }

    /// The caller a ticket stands for, if its MAC is right and it has not expired.
    pub fn redeem(&self, ticket: &str, now: u64) -> Result<Caller, AuthError> {
        let invalid = |m: &str| AuthError::InvalidToken(format!("stream ticket: {m}"));
        if ticket.len() > MAX_TICKET_LEN {
            return Err(invalid("too long"));
        }
        let (claims_b64, tag_b64) = ticket.split_once('.').ok_or_else(|| invalid("malformed"))?;
        let json = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| invalid("malformed"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| invalid("malformed"))?;
        // Constant-time comparison (hmac's verify_slice).
        self.mac(&json)
            .verify_slice(&tag)
            .map_err(|_| invalid("bad signature"))?;
        let claims: TicketClaims = serde_json::from_slice(&json).map_err(|_| invalid("malformed"))?;
        if claims.p != PURPOSE {
            return Err(invalid("wrong purpose"));
        }
        if now >= claims.exp {
            return Err(invalid("expired"));
        }
        Ok(Caller {
            tenant: claims.t,
            subject: claims.s,
            role: Some(claims.r),
            expires_at: claims.sx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            tenant: TenantId::parse("acme").unwrap(),
            subject: "u1".into(),
            role: Some(Role::Viewer),
            expires_at: 10_000,
        }
    }

    #[test]
    fn a_ticket_round_trips_until_it_expires() {
        let issuer = TicketIssuer::random(60);
        let (ticket, exp) = issuer.issue(&caller(), 1000).unwrap();
        assert_eq!(exp, 1060);
        assert_eq!(issuer.redeem(&ticket, 1059).unwrap(), caller());
        assert!(
            issuer
                .redeem(&ticket, 1060)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
    }

    #[test]
    fn a_ticket_never_outlives_its_token() {
        let issuer = TicketIssuer::random(60);
        let (_, exp) = issuer.issue(&caller(), 9_990).unwrap();
        assert_eq!(exp, 10_000);
    }

    #[test]
    fn tampered_or_foreign_tickets_are_refused() {
        let issuer = TicketIssuer::random(60);
        let (ticket, _) = issuer.issue(&caller(), 1000).unwrap();
        // Another node's key.
        assert!(TicketIssuer::random(60).redeem(&ticket, 1001).is_err());
        // Same MAC, other tenant in the claims.
        let (_, tag) = ticket.split_once('.').unwrap();
        let forged =
            serde_json::json!({"p":"stream","t":"other","s":"u1","r":"viewer","exp":1060,"sx":10000});
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(forged.to_string()));
        let err = issuer.redeem(&forged, 1001).unwrap_err().to_string();
        assert!(err.contains("bad signature"), "{err}");
        assert!(issuer.redeem("x", 1001).is_err());
        assert!(issuer.redeem(&"a".repeat(5000), 1001).is_err());
    }

    #[test]
    fn keys_must_be_long_hex() {
        assert!(parse_key(&"ab".repeat(32)).is_ok());
        assert!(parse_key(&"ab".repeat(31)).is_err());
        assert!(parse_key("zz").is_err());
    }
}
