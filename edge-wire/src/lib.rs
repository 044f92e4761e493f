//! The wire contract of edge-node: the MQTT topic tree ([`Topics`],
//! [`TopicClass`]) and the JSON message types with their schema ids
//! (`docs/schemas/*.schema.json`).
//!
//! Both the node (which publishes these messages) and the centre (which
//! ingests them) depend on this crate, so the contract lives in one place.
//! It depends on small, pure crates only (serde, humantime): no GStreamer,
//! ONNX Runtime, tokio or MQTT client.

mod messages;
mod topics;

pub use messages::*;
pub use topics::{Address, TopicClass, Topics, parse as parse_topic};
