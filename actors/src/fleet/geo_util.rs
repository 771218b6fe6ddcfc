//! Conversions between fleetwire's [`Location`] and the `geo` crate.

use geo::{Distance, Haversine, Point};

use crate::model::Location;

/// `geo` points are (x = longitude, y = latitude).
pub fn point(l: Location) -> Point<f64> {
    Point::new(l.longitude, l.latitude)
}

/// Great-circle distance in metres (haversine, mean Earth radius).
pub fn distance_m(a: Location, b: Location) -> f64 {
    Haversine.distance(point(a), point(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = distance_m(
            Location {
                latitude: 52.0,
                longitude: 13.0,
            },
            Location {
                latitude: 53.0,
                longitude: 13.0,
            },
        );
        assert!((d - 111_195.0).abs() < 100.0, "{d}");
    }
}
