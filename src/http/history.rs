//! `GET /v1/vehicles/{id}/history` and `GET /v1/vehicles/{id}/aggregates` (viewer,
//! tenant-scoped: the store is keyed by the caller's tenant, so another tenant's vehicle
//! reads as empty).
//!
//! History pages end on bucket boundaries: `next_cursor` is the start of the last bucket
//! returned. The bucket still filling in the vehicle's actor (up to `history.bucket_secs`
//! plus lateness) is not included: the actor may live on another node, and the live
//! state is `GET /v1/vehicles/{id}` and the SSE stream.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use fleetwire_actors::history::codec;
use fleetwire_actors::model::{SignalValue, VehicleId};
use serde::{Deserialize, Serialize};

use super::auth::require;
use super::{ApiError, ApiState};
use crate::auth::{Caller, Role};

/// Most records per history page.
const MAX_RECORDS: usize = 10_000;
/// Most hours per aggregates response (about 14 months).
const MAX_HOURS: usize = 10_000;

/// Query of `GET /v1/vehicles/{id}/history`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Start (RFC 3339, inclusive); default `to` minus one hour.
    from: Option<DateTime<Utc>>,
    /// End (RFC 3339, exclusive); default now.
    to: Option<DateTime<Utc>>,
    /// Comma-separated signal names to return; default all.
    fields: Option<String>,
    /// Most records per page, 1..=10000 (default 1000). A page ends on a bucket boundary.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// The previous page's `next_cursor` (a bucket start in Unix ms). At most 18 digits:
    /// every such number fits the i64 the API parses, where 19 digits may not.
    #[param(pattern = r"^-?[0-9]{1,18}$")]
    cursor: Option<String>,
}

/// One record of a history page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HistoryRow {
    timestamp: DateTime<Utc>,
    signals: BTreeMap<String, SignalValue>,
}

/// A page of history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HistoryPage {
    vehicle_id: VehicleId,
    records: Vec<HistoryRow>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::store_unavailable("history store", e)
}

/// What both endpoints check first: the viewer role, the vehicle id, and the time range
/// (`to` defaults to now, `from` to `default` before `to`). Another tenant's vehicle needs
/// no check here: the store is keyed by the caller's tenant.
fn vehicle_range(
    caller: &Caller,
    id: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    default: Duration,
) -> Result<(VehicleId, DateTime<Utc>, DateTime<Utc>), ApiError> {
    require(caller, Role::Viewer)?;
    let id = VehicleId::parse(id).map_err(|m| ApiError::bad_request("bad_vehicle_id", m))?;
    let to = to.unwrap_or_else(Utc::now);
    // An empty or inverted range is a question with no records, not a bad request.
    let from = from.unwrap_or(to - default).min(to);
    Ok((id, from, to))
}

/// A vehicle's records in a time range, oldest first (viewer).
#[utoipa::path(
    get,
    path = "/v1/vehicles/{id}/history",
    operation_id = "vehicle_history",
    tag = "vehicles",
    params(("id" = VehicleId, Path, description = "The vehicle id (1–128 characters of `A-Z a-z 0-9 _ - . :`)"), HistoryQuery),
    responses(
        (status = 200, description = "A page of records; continue with `cursor=next_cursor`", body = HistoryPage),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn history(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, from, to) = vehicle_range(&caller, &id, query.from, query.to, Duration::hours(1))?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=MAX_RECORDS).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be 1 to {MAX_RECORDS}"),
        ));
    }
    let fields: Option<BTreeSet<&str>> = query
        .fields
        .as_deref()
        .map(|f| f.split(',').map(str::trim).filter(|f| !f.is_empty()).collect());
    let mut after = match query.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request("bad_cursor", "cursor is not one this API gave"))?,
        ),
    };
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    // A bucket that starts before `from` may hold records inside the range.
    let bucket_ms = state.history_bucket_ms;
    let scan_from = from_ms - from_ms.rem_euclid(bucket_ms);
    let mut records = Vec::new();
    let mut next_cursor = None;
    'pages: loop {
        let page = state
            .history
            .query_buckets(&caller.tenant, &id, scan_from, to_ms, after, 100)
            .await
            .map_err(unavailable)?;
        for bucket in &page.buckets {
            if !records.is_empty() && records.len() + bucket.count as usize > limit {
                next_cursor = after.map(|a| a.to_string());
                break 'pages;
            }
            let decoded = codec::decode(&bucket.data).map_err(unavailable)?;
            for r in decoded {
                if r.timestamp < from || r.timestamp >= to {
                    continue;
                }
                let signals: BTreeMap<String, SignalValue> = match &fields {
                    None => r.payload,
                    Some(f) => r
                        .payload
                        .into_iter()
                        .filter(|(k, _)| f.contains(k.as_str()))
                        .collect(),
                };
                if !signals.is_empty() {
                    records.push(HistoryRow {
                        timestamp: r.timestamp,
                        signals,
                    });
                }
            }
            after = Some(bucket.start_ms);
        }
        if page.next_after.is_none() {
            break;
        }
    }
    Ok(HttpResponse::Ok().json(HistoryPage {
        vehicle_id: id,
        records,
        next_cursor,
    }))
}

/// Query of `GET /v1/vehicles/{id}/aggregates`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AggregatesQuery {
    /// Start (RFC 3339); hours starting at or after it; default `to` minus 24 hours.
    from: Option<DateTime<Utc>>,
    /// End (RFC 3339, exclusive); default now.
    to: Option<DateTime<Utc>>,
}

/// Stats of one numeric signal in an hour.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SignalRow {
    min: f64,
    max: f64,
    avg: f64,
    count: u64,
}

/// One hour.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HourRow {
    hour: DateTime<Utc>,
    count: u64,
    signals: BTreeMap<String, SignalRow>,
}

/// A vehicle's hour aggregates.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AggregatesPage {
    vehicle_id: VehicleId,
    hours: Vec<HourRow>,
}

/// A vehicle's hourly aggregates in a time range, oldest first (viewer).
#[utoipa::path(
    get,
    path = "/v1/vehicles/{id}/aggregates",
    operation_id = "vehicle_aggregates",
    tag = "vehicles",
    params(("id" = VehicleId, Path, description = "The vehicle id (1–128 characters of `A-Z a-z 0-9 _ - . :`)"), AggregatesQuery),
    responses(
        (status = 200, description = "The hours of the range that have data, oldest first", body = AggregatesPage),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn aggregates(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<AggregatesQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, from, to) = vehicle_range(&caller, &id, query.from, query.to, Duration::hours(24))?;
    let rows = state
        .history
        .query_aggregates(
            &caller.tenant,
            &id,
            from.timestamp_millis(),
            to.timestamp_millis(),
            MAX_HOURS,
        )
        .await
        .map_err(unavailable)?;
    let hours = rows
        .into_iter()
        .map(|a| HourRow {
            hour: DateTime::from_timestamp_millis(a.hour_ms).unwrap_or_default(),
            count: a.count,
            signals: a
                .signals
                .into_iter()
                .map(|(name, s)| {
                    let avg = if s.n == 0 { 0.0 } else { s.sum / s.n as f64 };
                    (
                        name,
                        SignalRow {
                            min: s.min,
                            max: s.max,
                            avg,
                            count: s.n,
                        },
                    )
                })
                .collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(AggregatesPage {
        vehicle_id: id,
        hours,
    }))
}
