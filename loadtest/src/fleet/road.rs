//! The simulated street network: a square grid of streets centred on the fleet's centre
//! and clipped to its radius, with a hierarchy of side streets, arterials and expressways.
//!
//! A grid is enough to make tracks look like driving (straight runs, right-angle turns,
//! stops at crossings) while keeping routing to a handful of arithmetic candidates, so a
//! new trip costs no allocation and no graph search.

use rand::Rng;
use rand::rngs::StdRng;

/// A street crossing: column `i` counts blocks east of the centre, row `j` blocks north.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Node {
    pub i: i32,
    pub j: i32,
}

impl Node {
    /// Blocks between two crossings when driving along streets.
    pub fn manhattan(self, other: Node) -> i32 {
        (self.i - other.i).abs() + (self.j - other.j).abs()
    }
}

/// Most waypoints a route has: two corners (a "Z" via a faster street) plus the destination.
pub(crate) const MAX_WAYPOINTS: usize = 3;

/// A planned trip: straight legs from the start through each waypoint in turn, each leg
/// along one row or one column.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub waypoints: [Node; MAX_WAYPOINTS],
    pub len: u8,
}

impl Route {
    /// The trip's final crossing.
    pub fn destination(&self) -> Node {
        self.waypoints[usize::from(self.len) - 1]
    }
}

/// The grid geometry for one fleet.
#[derive(Debug, Clone)]
pub(crate) struct Grid {
    /// Length of one block in km.
    pub block_km: f64,
    /// Largest |i| or |j| of a crossing inside the radius.
    max_index: i32,
    /// Squared radius in blocks², for the inside test.
    radius_blocks_sq: f64,
}

/// Blocks from the centre to the edge for small areas; larger areas keep 500 m blocks.
const BLOCKS_PER_RADIUS: f64 = 24.0;
/// City blocks are a few hundred metres; longer ones make tracks look like a coarse mesh.
const MAX_BLOCK_KM: f64 = 0.5;
/// Time lost per turn when comparing candidate routes (slowing down, waiting to turn).
const TURN_PENALTY_H: f64 = 20.0 / 3600.0;

impl Grid {
    /// A grid that fills a disc of `radius_km` (callers pass a positive, finite radius).
    pub fn new(radius_km: f64) -> Self {
        let block_km = (radius_km / BLOCKS_PER_RADIUS).min(MAX_BLOCK_KM);
        let radius_blocks = radius_km / block_km;
        Self {
            block_km,
            max_index: radius_blocks.floor() as i32,
            radius_blocks_sq: radius_blocks * radius_blocks,
        }
    }

    /// Whether a crossing lies inside the fleet's disc. Because a disc is convex, every
    /// point of a straight street between two inside crossings is inside too, so checking
    /// route corners is enough to keep whole tracks within the radius.
    pub fn contains(&self, n: Node) -> bool {
        let (i, j) = (f64::from(n.i), f64::from(n.j));
        i * i + j * j <= self.radius_blocks_sq
    }

    /// East/north offset of a crossing from the centre, in km.
    pub fn position_km(&self, n: Node) -> (f64, f64) {
        (f64::from(n.i) * self.block_km, f64::from(n.j) * self.block_km)
    }

    /// Speed limit of the street on grid line `line` (a row or column index), km/h.
    /// Expressways sit off-centre (like a city ring's tangents), arterials every 4 blocks.
    pub fn limit_kmh(line: i32) -> f64 {
        if (line - 6).rem_euclid(12) == 0 {
            120.0
        } else if line.rem_euclid(4) == 0 {
            60.0
        } else {
            40.0
        }
    }

    /// Whether a crossing is controlled by traffic lights (two major streets meet).
    pub fn has_lights(n: Node) -> bool {
        n.i.rem_euclid(4) == 0 && n.j.rem_euclid(4) == 0
    }

    /// A uniformly random crossing inside the disc.
    pub fn random_node(&self, rng: &mut StdRng) -> Node {
        loop {
            let n = Node {
                i: rng.random_range(-self.max_index..=self.max_index),
                j: rng.random_range(-self.max_index..=self.max_index),
            };
            // The disc covers π/4 of the square, so this rarely takes more than two draws.
            if self.contains(n) {
                return n;
            }
        }
    }

    /// Estimated driving time of a straight leg, hours.
    fn leg_hours(&self, from: Node, to: Node) -> f64 {
        let (blocks, line) = if from.j == to.j {
            ((to.i - from.i).abs(), from.j)
        } else {
            ((to.j - from.j).abs(), from.i)
        };
        f64::from(blocks) * self.block_km / Self::limit_kmh(line)
    }

    /// Estimated time of a route from `from`, hours, or `None` when a corner is outside.
    fn route_hours(&self, from: Node, route: &Route) -> Option<f64> {
        let mut at = from;
        let mut hours = 0.0;
        for &w in &route.waypoints[..usize::from(route.len)] {
            if !self.contains(w) {
                return None;
            }
            if w != at {
                hours += self.leg_hours(at, w) + TURN_PENALTY_H;
                at = w;
            }
        }
        Some(hours)
    }

    /// Plans a route like a driver with a rough sense of the city: the two "L" routes
    /// plus "Z" routes that detour via nearby arterials or expressways, choosing the
    /// quickest estimate with a little noise so not every driver picks the same streets.
    pub fn plan(&self, from: Node, to: Node, rng: &mut StdRng) -> Route {
        let mut best = Route {
            waypoints: [Node { i: to.i, j: from.j }, to, to],
            len: 2,
        };
        let mut best_hours = f64::INFINITY;
        let mut consider = |route: Route, rng: &mut StdRng| {
            if let Some(h) = self.route_hours(from, &route) {
                let h = h * rng.random_range(1.0..1.15);
                if h < best_hours {
                    best_hours = h;
                    best = route;
                }
            }
        };
        consider(
            Route {
                waypoints: [Node { i: to.i, j: from.j }, to, to],
                len: 2,
            },
            rng,
        );
        consider(
            Route {
                waypoints: [Node { i: from.i, j: to.j }, to, to],
                len: 2,
            },
            rng,
        );
        // Major lines (multiples of 2 cover arterials and expressways) in a band around
        // the trip; the band lets a driver go a little out of the way for a fast street.
        let (j_lo, j_hi) = (from.j.min(to.j) - 6, from.j.max(to.j) + 6);
        for r in (j_lo..=j_hi).filter(|r| r.rem_euclid(2) == 0 && Self::limit_kmh(*r) > 40.0) {
            let route = Route {
                waypoints: [Node { i: from.i, j: r }, Node { i: to.i, j: r }, to],
                len: 3,
            };
            consider(route, rng);
        }
        let (i_lo, i_hi) = (from.i.min(to.i) - 6, from.i.max(to.i) + 6);
        for c in (i_lo..=i_hi).filter(|c| c.rem_euclid(2) == 0 && Self::limit_kmh(*c) > 40.0) {
            let route = Route {
                waypoints: [Node { i: c, j: from.j }, Node { i: c, j: to.j }, to],
                len: 3,
            };
            consider(route, rng);
        }
        // At least one L corner is always inside (|c1|² + |c2|² = |from|² + |to|²), so a
        // candidate was accepted and `best` is a valid route.
        best
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn planned_routes_stay_inside_and_end_at_the_destination() {
        let grid = Grid::new(12.0);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let (from, to) = (grid.random_node(&mut rng), grid.random_node(&mut rng));
            let route = grid.plan(from, to, &mut rng);
            assert_eq!(route.destination(), to);
            let mut at = from;
            for &w in &route.waypoints[..usize::from(route.len)] {
                assert!(grid.contains(w), "{w:?} outside");
                assert!(
                    w.i == at.i || w.j == at.j,
                    "leg {at:?} -> {w:?} is not along one street"
                );
                at = w;
            }
        }
    }
}
