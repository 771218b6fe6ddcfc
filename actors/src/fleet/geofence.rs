//! Geofences: circles and polygons per tenant, an R-tree over their bounding boxes, and
//! the enter/exit machine.
//!
//! The index (`rstar`) holds one box per geofence in degrees; a lookup takes the boxes
//! that contain the point and checks each candidate exactly (haversine distance for a
//! circle, point-in-polygon with `geo` for a polygon). Membership is the set of geofence
//! ids the vehicle was last inside; its difference to the new set gives the events.

use std::collections::BTreeSet;

use geo::{Contains, Coord, LineString, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde::{Deserialize, Serialize};

use super::geo_util::{distance_m, point};
use crate::model::Location;

/// Longest geofence id and name.
pub const MAX_NAME_LEN: usize = 128;
/// Most polygon vertices.
pub const MAX_VERTICES: usize = 1000;
/// Metres per degree of latitude (mean Earth radius), for bounding boxes.
const M_PER_DEG: f64 = 111_195.0;

/// A geofence's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Shape {
    /// Everything within `radius_m` of `center`.
    Circle {
        /// Centre.
        center: Location,
        /// Radius, metres (> 0, ≤ 1000 km).
        radius_m: f64,
    },
    /// A simple polygon; the ring closes itself (the last vertex need not repeat the first).
    Polygon {
        /// Vertices, at least 3.
        points: Vec<Location>,
    },
}

/// A named area of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geofence {
    /// Unique within the tenant: 1–128 chars of `A-Z a-z 0-9 _ - .`.
    pub id: String,
    /// For people.
    pub name: String,
    /// The area (`{"type": "circle", …}` or `{"type": "polygon", …}`).
    pub shape: Shape,
}

impl Geofence {
    /// Checks id, name and geometry; the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        check_id(&self.id, "geofence id")?;
        if self.name.len() > MAX_NAME_LEN {
            return Err(format!("geofence name must be at most {MAX_NAME_LEN} characters"));
        }
        let valid = |l: &Location| {
            l.latitude.is_finite()
                && l.longitude.is_finite()
                && l.latitude.abs() <= 90.0
                && l.longitude.abs() <= 180.0
        };
        match &self.shape {
            Shape::Circle { center, radius_m } => {
                if !valid(center) {
                    return Err("circle center must be a valid latitude/longitude".into());
                }
                if !(radius_m.is_finite() && *radius_m > 0.0 && *radius_m <= 1_000_000.0) {
                    return Err("circle radius_m must be > 0 and at most 1000000".into());
                }
            }
            Shape::Polygon { points } => {
                if points.len() < 3 || points.len() > MAX_VERTICES {
                    return Err(format!("a polygon needs 3 to {MAX_VERTICES} points"));
                }
                if !points.iter().all(valid) {
                    return Err("polygon points must be valid latitudes/longitudes".into());
                }
            }
        }
        Ok(())
    }

    /// Bounding box in degrees (longitude, latitude).
    fn envelope(&self) -> AABB<[f64; 2]> {
        match &self.shape {
            Shape::Circle { center, radius_m } => {
                let dlat = radius_m / M_PER_DEG;
                let cos = center.latitude.to_radians().cos().max(1e-6);
                let dlon = (radius_m / (M_PER_DEG * cos)).min(180.0);
                AABB::from_corners(
                    [center.longitude - dlon, center.latitude - dlat],
                    [center.longitude + dlon, center.latitude + dlat],
                )
            }
            Shape::Polygon { points } => AABB::from_points(
                points
                    .iter()
                    .map(|p| [p.longitude, p.latitude])
                    .collect::<Vec<_>>()
                    .iter(),
            ),
        }
    }
}

/// Checks an id used in URLs: 1–128 chars of `A-Z a-z 0-9 _ - .`.
pub fn check_id(id: &str, what: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_NAME_LEN {
        return Err(format!("{what} must be 1 to {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "{what} contains the character {c:?}; allowed: A-Z a-z 0-9 _ - ."
        ));
    }
    Ok(())
}

/// A geofence ready for lookups.
#[derive(Debug, Clone)]
enum Prepared {
    Circle { center: Location, radius_m: f64 },
    Polygon(Polygon<f64>),
}

/// The R-tree over a tenant's geofences. Built once per change of the tenant's rules and
/// shared (read-only) by every vehicle actor.
#[derive(Debug, Clone, Default)]
pub struct GeofenceIndex {
    /// Geofence (id, name) and exact shape, by position in the tree's data.
    fences: Vec<(String, String, Prepared)>,
    tree: RTree<GeomWithData<Rectangle<[f64; 2]>, usize>>,
}

impl GeofenceIndex {
    /// Indexes `fences` (assumed validated).
    pub fn new(fences: &[Geofence]) -> Self {
        let mut boxes = Vec::with_capacity(fences.len());
        let prepared = fences
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let env = f.envelope();
                boxes.push(GeomWithData::new(Rectangle::from_aabb(env), i));
                let shape = match &f.shape {
                    Shape::Circle { center, radius_m } => Prepared::Circle {
                        center: *center,
                        radius_m: *radius_m,
                    },
                    Shape::Polygon { points } => Prepared::Polygon(Polygon::new(
                        LineString::from(
                            points
                                .iter()
                                .map(|p| Coord {
                                    x: p.longitude,
                                    y: p.latitude,
                                })
                                .collect::<Vec<_>>(),
                        ),
                        vec![],
                    )),
                };
                (f.id.clone(), f.name.clone(), shape)
            })
            .collect();
        Self {
            fences: prepared,
            tree: RTree::bulk_load(boxes),
        }
    }

    /// Ids of the geofences that contain `at`.
    pub fn containing(&self, at: Location) -> BTreeSet<String> {
        let p = point(at);
        self.tree
            .locate_all_at_point(&[at.longitude, at.latitude])
            .filter_map(|entry| {
                let (id, _, shape) = &self.fences[entry.data];
                let inside = match shape {
                    Prepared::Circle { center, radius_m } => distance_m(*center, at) <= *radius_m,
                    Prepared::Polygon(poly) => poly.contains(&p),
                };
                inside.then(|| id.clone())
            })
            .collect()
    }

    /// The name of a geofence, if it exists.
    pub fn name(&self, id: &str) -> Option<&str> {
        self.fences
            .iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, n, _)| n.as_str())
    }

    /// Number of geofences.
    pub fn len(&self) -> usize {
        self.fences.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.fences.is_empty()
    }
}

/// Geofences entered and left by one position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Crossings {
    /// Entered, in id order.
    pub entered: Vec<String>,
    /// Left, in id order.
    pub left: Vec<String>,
}

/// Updates `inside` (the persisted membership) for a new accepted position. Geofences
/// deleted since are dropped from the membership without an exit event: the vehicle did
/// not move, the rule went away.
pub fn cross(index: &GeofenceIndex, inside: &mut BTreeSet<String>, at: Location) -> Crossings {
    inside.retain(|id| index.name(id).is_some());
    let now = index.containing(at);
    let crossings = Crossings {
        entered: now.difference(inside).cloned().collect(),
        left: inside.difference(&now).cloned().collect(),
    };
    *inside = now;
    crossings
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn loc(latitude: f64, longitude: f64) -> Location {
        Location { latitude, longitude }
    }

    fn fences() -> Vec<Geofence> {
        vec![
            Geofence {
                id: "depot".into(),
                name: "Depot".into(),
                shape: Shape::Circle {
                    center: loc(52.52, 13.405),
                    radius_m: 1000.0,
                },
            },
            Geofence {
                id: "east".into(),
                name: "East".into(),
                // A triangle east of the depot, overlapping its circle.
                shape: Shape::Polygon {
                    points: vec![loc(52.50, 13.41), loc(52.54, 13.41), loc(52.52, 13.45)],
                },
            },
        ]
    }

    #[test]
    fn circles_and_polygons_are_exact_not_just_boxes() {
        let idx = GeofenceIndex::new(&fences());
        assert_eq!(
            idx.containing(loc(52.52, 13.405)),
            BTreeSet::from(["depot".to_string()])
        );
        // Inside the circle's box, outside the circle (north-west corner).
        assert!(idx.containing(loc(52.5285, 13.3915)).is_empty());
        assert_eq!(
            idx.containing(loc(52.52, 13.43)),
            BTreeSet::from(["east".to_string()])
        );
        // Inside the triangle's box, outside the triangle.
        assert!(idx.containing(loc(52.535, 13.445)).is_empty());
        // Both at once where they overlap.
        assert_eq!(idx.containing(loc(52.52, 13.412)).len(), 2);
    }

    #[test]
    fn crossings_report_enter_and_exit_once() {
        let idx = GeofenceIndex::new(&fences());
        let mut inside = BTreeSet::new();
        let c = cross(&idx, &mut inside, loc(52.52, 13.405));
        assert_eq!(c.entered, ["depot"]);
        assert_eq!(
            cross(&idx, &mut inside, loc(52.5201, 13.405)),
            Crossings::default()
        );
        let c = cross(&idx, &mut inside, loc(52.52, 13.43));
        assert_eq!(
            (c.entered, c.left),
            (vec!["east".to_string()], vec!["depot".to_string()])
        );
        let c = cross(&idx, &mut inside, loc(52.52, 13.405));
        assert_eq!(
            (c.entered, c.left),
            (vec!["depot".to_string()], vec!["east".to_string()])
        );
        // The geofence is deleted: membership forgets it silently.
        let only_east = GeofenceIndex::new(&fences()[1..]);
        assert_eq!(
            cross(&only_east, &mut inside, loc(52.52, 13.405)),
            Crossings::default()
        );
        assert!(inside.is_empty());
    }

    #[test]
    fn validation_names_the_problem() {
        let mut f = fences()[0].clone();
        f.id = "a b".into();
        assert!(f.validate().unwrap_err().contains("' '"));
        let f = Geofence {
            id: "x".into(),
            name: "x".into(),
            shape: Shape::Polygon {
                points: vec![loc(1.0, 1.0), loc(2.0, 2.0)],
            },
        };
        assert!(f.validate().unwrap_err().contains("3"));
        let json = r#"{"id":"c","name":"C","shape":{"type":"circle","center":{"latitude":1,"longitude":2},"radius_m":-1}}"#;
        let f: Geofence = serde_json::from_str(json).unwrap();
        assert!(f.validate().unwrap_err().contains("radius_m"));
        let typo = r#"{"id":"c","name":"C","shape":{"type":"circle","center":{"latitude":1,"longitude":2},"radius":5}}"#;
        assert!(serde_json::from_str::<Geofence>(typo).is_err());
    }

    proptest! {
        /// The index answers exactly like checking every geofence one by one.
        #[test]
        fn index_agrees_with_brute_force(lat in 52.45f64..52.6, lon in 13.3f64..13.5) {
            let fs = fences();
            let idx = GeofenceIndex::new(&fs);
            let brute: BTreeSet<String> = fs.iter().filter(|f| match &f.shape {
                Shape::Circle { center, radius_m } => distance_m(*center, loc(lat, lon)) <= *radius_m,
                Shape::Polygon { .. } => GeofenceIndex::new(std::slice::from_ref(f)).fences.iter().any(|(_, _, p)| matches!(p, Prepared::Polygon(poly) if poly.contains(&point(loc(lat, lon))))),
            }).map(|f| f.id.clone()).collect();
            prop_assert_eq!(idx.containing(loc(lat, lon)), brute);
        }
    }
}
