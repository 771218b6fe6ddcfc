//! Per-vehicle state. (Stub: filled by the vehicle work.)
