//! Backend adapters: implementations of the ports in `fleetwire_actors::ports`.
//!
//! - [`embedded`]: in-process stream, redb state and lease stores, in-process fan-out.

pub mod embedded;
