//! OpenAPI schemas (`utoipa::ToSchema`) for the actor types the public API shows, used by
//! the binary's `GET /openapi.json` (feature `openapi`).
//!
//! The model types in [`crate::model`] derive their schemas where they are declared. Two
//! kinds are written here instead:
//!
//! - [`SignalValue`]: its variants overlap in JSON (an integer is also a number, a
//!   location is also a map of numbers), so the derived `oneOf` would reject valid values;
//!   it is an `anyOf`, written by hand.
//! - The fleet types (`crate::fleet`): each is described by a schema-only twin with the
//!   same fields and serde attributes, and its `ToSchema` delegates to the twin. This keeps
//!   documentation attributes out of the fleet state machines. The binary's `openapi` test
//!   compares every twin with the real type's JSON (a field added to one and not the other
//!   fails it).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, schema::AdditionalProperties};
use utoipa::{PartialSchema, ToSchema};

use crate::fleet::{
    AlertCondition, AlertRule, AlertType, ChargingSession, Crossing, FleetEvent, Geofence, Shape, Trip,
};
use crate::model::{Location, SignalValue, VehicleId};

impl PartialSchema for SignalValue {
    fn schema() -> RefOr<Schema> {
        let of = |t: Type| ObjectBuilder::new().schema_type(SchemaType::Type(t)).build();
        AnyOfBuilder::new()
            .item(of(Type::Boolean))
            .item(of(Type::Integer))
            .item(of(Type::Number))
            .item(of(Type::String))
            .item(Location::schema())
            // A record of named values (Tesla's `Doors`, `Time`, …).
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Object))
                    .additional_properties(Some(AdditionalProperties::RefOr(
                        utoipa::openapi::Ref::from_schema_name("SignalValue").into(),
                    ))),
            )
            // The vehicle reports the signal as unavailable.
            .item(of(Type::Null))
            .description(Some(
                "A signal value: boolean, integer, number, text, location, a record of named values, \
                 or null when the vehicle reports the signal unavailable.",
            ))
            .into()
    }
}

impl ToSchema for SignalValue {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Location::name().into(), Location::schema()));
    }
}

/// Implements `ToSchema` for `$real` by delegating to its twin `$twin`.
macro_rules! twin {
    ($($real:ident => $twin:ident),* $(,)?) => {$(
        impl PartialSchema for $real {
            fn schema() -> RefOr<Schema> {
                <$twin as PartialSchema>::schema()
            }
        }
        impl ToSchema for $real {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($real))
            }
            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                <$twin as ToSchema>::schemas(schemas)
            }
        }
    )*};
}

twin! {
    Trip => TripDoc,
    ChargingSession => ChargingSessionDoc,
    AlertType => AlertTypeDoc,
    FleetEvent => FleetEventDoc,
    Shape => ShapeDoc,
    Geofence => GeofenceDoc,
    Crossing => CrossingDoc,
    AlertCondition => AlertConditionDoc,
    AlertRule => AlertRuleDoc,
}

// The twins are never built: they exist for their derived schemas (and `Serialize` only so
// the `#[serde]` attributes the schema derive reads are accepted).

/// A finished trip.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct TripDoc {
    /// Content id: vehicle, `trip`, start time.
    id: String,
    /// Source time the vehicle started to drive.
    started_at: DateTime<Utc>,
    /// Source time it stopped.
    ended_at: DateTime<Utc>,
    /// First known position of the trip.
    start_location: Option<Location>,
    /// Last known position of the trip.
    end_location: Option<Location>,
    /// Distance driven, metres.
    distance_m: f64,
    /// `ended_at - started_at`, seconds.
    duration_secs: i64,
    /// Highest speed, km/h.
    max_speed_kmh: f64,
    /// Average speed, km/h.
    avg_speed_kmh: f64,
    /// State of charge at the start, percent.
    start_soc: Option<f64>,
    /// State of charge at the end, percent.
    end_soc: Option<f64>,
    /// Percentage points used.
    soc_used: Option<f64>,
    /// Energy used, kWh, when the vehicle reports an energy counter.
    energy_used_kwh: Option<f64>,
}

/// A finished charging session.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct ChargingSessionDoc {
    /// Content id: vehicle, `charge`, start time.
    id: String,
    /// Source time charging started.
    started_at: DateTime<Utc>,
    /// Source time charging ended.
    ended_at: DateTime<Utc>,
    /// `ended_at - started_at`, seconds.
    duration_secs: i64,
    /// Where the vehicle charged, when known.
    location: Option<Location>,
    /// State of charge at the start, percent.
    start_soc: Option<f64>,
    /// State of charge at the end, percent.
    end_soc: Option<f64>,
    /// Percentage points added.
    soc_added: Option<f64>,
    /// Energy added, kWh.
    energy_added_kwh: f64,
    /// Highest charging power seen, kW.
    max_power_kw: f64,
}

/// How an alert fires.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum AlertTypeDoc {
    LowSoc,
    Overspeed,
    Offline,
    Geofence,
}

/// What happened (the `type` and its fields).
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schema(as = EventKind)]
#[allow(dead_code)]
enum EventKindDoc {
    /// The vehicle started a trip.
    TripStarted { trip_id: String },
    /// A trip ended.
    TripEnded { trip: Trip },
    /// Charging started.
    ChargingStarted { session_id: String },
    /// Charging ended.
    ChargingEnded { session: ChargingSession },
    /// The vehicle entered a geofence.
    GeofenceEnter { geofence_id: String, name: String },
    /// The vehicle left a geofence.
    GeofenceExit { geofence_id: String, name: String },
    /// An alert rule fired; `value` is the SOC, km/h or minutes offline when there is one.
    AlertRaised {
        rule_id: String,
        alert: AlertType,
        value: Option<f64>,
        message: String,
    },
    /// A latched alert's condition is over.
    AlertCleared { rule_id: String, alert: AlertType },
}

/// One fleet event of one vehicle (`GET /v1/vehicles/{id}/events`, SSE `fleet_event`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct FleetEventDoc {
    /// Content id: the same event derived twice has the same id (dedupe on it).
    id: String,
    /// The vehicle.
    vehicle_id: VehicleId,
    /// Source time the event refers to.
    at: DateTime<Utc>,
    /// Where the vehicle was, when known.
    location: Option<Location>,
    /// What happened.
    #[serde(flatten)]
    kind: EventKindDoc,
}

/// A geofence's shape.
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[allow(dead_code)]
enum ShapeDoc {
    /// Everything within `radius_m` (> 0, at most 1000 km) of `center`.
    Circle {
        center: GeoPointDoc,
        #[schema(exclusive_minimum = 0, maximum = 1_000_000)]
        radius_m: f64,
    },
    /// A simple polygon of 3 to 1000 vertices; the ring closes itself.
    Polygon {
        #[schema(min_items = 3, max_items = 1000)]
        points: Vec<GeoPointDoc>,
    },
}

/// A point of a geofence: a `Location` within range (a signal's location is reported as
/// the vehicle sent it, so `Location` itself is unbounded).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GeoPoint)]
#[allow(dead_code)]
struct GeoPointDoc {
    /// Degrees north.
    #[schema(minimum = -90, maximum = 90)]
    latitude: f64,
    /// Degrees east.
    #[schema(minimum = -180, maximum = 180)]
    longitude: f64,
}

/// A named area of a tenant.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct GeofenceDoc {
    /// Unique within the tenant: 1–128 chars of `A-Z a-z 0-9 _ - .`.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,128}$")]
    id: String,
    /// For people, at most 128 bytes of UTF-8.
    name: String,
    /// The area.
    shape: Shape,
}

/// Which crossing of a geofence rule alerts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum CrossingDoc {
    Enter,
    Exit,
}

/// What an alert rule watches.
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[allow(dead_code)]
enum AlertConditionDoc {
    /// State of charge below `below_percent` (0–100).
    LowSoc {
        #[schema(minimum = 0, maximum = 100)]
        below_percent: f64,
    },
    /// Speed above `above_kmh` (> 0).
    Overspeed {
        #[schema(exclusive_minimum = 0)]
        above_kmh: f64,
    },
    /// No record for more than `after_minutes` (1 to 1440).
    Offline {
        #[schema(minimum = 1, maximum = 1440)]
        after_minutes: u64,
    },
    /// A crossing of geofence `geofence_id`, which must exist in the tenant.
    Geofence {
        #[schema(pattern = r"^[A-Za-z0-9_.-]{1,128}$")]
        geofence_id: String,
        on: Crossing,
    },
}

/// A tenant's alert rule.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct AlertRuleDoc {
    /// Unique within the tenant: 1–128 chars of `A-Z a-z 0-9 _ - .`.
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,128}$")]
    id: String,
    /// What it watches.
    condition: AlertCondition,
}
