//! SSE subscribers. (Stub.)
