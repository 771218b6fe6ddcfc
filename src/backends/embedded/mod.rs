//! Embedded backends (stub: being written).
