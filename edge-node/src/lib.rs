//! edge-node: an edge video analytics appliance.
//!
//! See `ARCHITECTURE.md` at the repository root for the bird's-eye view.

pub mod bench;
pub mod budget;
pub mod check;
pub mod config;
pub mod cpu;
pub mod detect;
pub mod events;
pub mod frame;
pub mod idle;
pub mod metrics;
pub mod node;
pub mod publish;
pub mod redact;
pub mod rules;
pub mod sched;
pub mod sdnotify;
pub mod snapshot;
pub mod source;
pub mod tamper;
pub mod track;
pub mod traffic;
