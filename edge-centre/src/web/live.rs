//! Live updates: after each commit the writer hands its rows to
//! [`publisher`]'s hook, which sends what the console shows live (new
//! incidents, camera states) on a broadcast channel. Sending never waits:
//! a console that falls behind loses updates (its page reloads), the
//! writer never does.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::decode::Record;
use crate::store::{Item, Row};
use crate::writer::OnCommit;

/// Something committed that open pages want to know.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Update {
    /// An incident was (or may have been: a redelivery) stored.
    Alert { alert_id: String },
    /// A camera reported its state.
    Camera {
        node: String,
        camera: String,
        state: String,
    },
}

impl Update {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Update::Alert { .. } => "alert",
            Update::Camera { .. } => "camera",
        }
    }
}

/// What a committed batch means for the console.
pub fn updates(items: &[Item]) -> Vec<Update> {
    let mut out = Vec::new();
    for item in items {
        let Row::Message(r) = &item.row else { continue };
        match r.as_ref() {
            Record::Event(e) => out.extend(e.alerts.iter().map(|k| Update::Alert {
                alert_id: format!("{}/{k}", e.id),
            })),
            Record::ZoneAlert(z) if !z.alerts.iter().any(|k| k.ends_with("_cleared")) => {
                out.push(Update::Alert {
                    alert_id: z.id.clone(),
                });
            }
            Record::CameraAlert(c) if !c.kind.ends_with("_cleared") => out.push(Update::Alert {
                alert_id: c.id.clone(),
            }),
            Record::CameraStatus { status, .. } => out.push(Update::Camera {
                node: status.node.clone(),
                camera: status.camera.clone(),
                state: serde_json::to_string(&status.state)
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string(),
            }),
            _ => {}
        }
    }
    out
}

/// The writer's hook that publishes on `tx`.
pub fn publisher(tx: broadcast::Sender<Update>) -> OnCommit {
    Arc::new(move |items: &[Item]| {
        if tx.receiver_count() == 0 {
            return;
        }
        for u in updates(items) {
            let _ = tx.send(u);
        }
    })
}
