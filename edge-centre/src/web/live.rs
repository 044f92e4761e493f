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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use crate::store::contract::event;

    fn item(topic: &str, json: &str) -> Item {
        let r = decode("edge", topic, json.as_bytes(), 1 << 20)
            .unwrap()
            .unwrap();
        Item {
            received: std::time::SystemTime::now(),
            row: Row::Message(Box::new(r)),
        }
    }

    /// New incidents and camera states are told; plain lifecycle messages
    /// and cleared alarms are not.
    #[test]
    fn a_batch_tells_its_incidents_and_camera_states() {
        let ev = "edge/d1/box-1/cam-1/events";
        let status = r#"{"schema":"edge-camera-status/3","node":"box-1","camera":"cam-1","state":"reconnecting","since":"2026-12-07T08:00:00.000Z","time":"2026-12-07T08:00:00.000Z","last_error":null,"detail":null,"frames":1,"frames_analysed":1,"frames_dropped":0,"drops":{"queue_full":0,"inference_failed":0},"fps_in":5.0,"fps_analysed":5.0,"last_frame_age_s":0.1,"reconnects":0,"retry_attempt":0,"outage_since":null,"outage_s":null,"stream":null,"health":[]}"#;
        let cleared = r#"{"schema":"edge-camera-alert/1","id":"box-1.cam-1.19a.c2","seq":2,"node":"box-1","district":"d1","camera":"cam-1","kind":"black_cleared","time":"2026-12-07T08:00:00.000Z","t":1.0,"duration_s":10.0,"score":0.0,"threshold":8.0,"health":[]}"#;
        let items = [
            item(ev, &event(1, 7, "new", "")),
            item(ev, &event(2, 7, "update", r#""loitering","wrong_way""#)),
            item("edge/d1/box-1/cam-1/status", status),
            item("edge/d1/box-1/cam-1/alerts", cleared),
        ];
        assert_eq!(
            updates(&items),
            vec![
                Update::Alert {
                    alert_id: "box-1.cam-1.19a.7/loitering".into()
                },
                Update::Alert {
                    alert_id: "box-1.cam-1.19a.7/wrong_way".into()
                },
                Update::Camera {
                    node: "box-1".into(),
                    camera: "cam-1".into(),
                    state: "reconnecting".into()
                },
            ]
        );
    }

    /// Publishing never waits, with or without listeners.
    #[test]
    fn the_hook_never_waits() {
        let (tx, mut rx) = broadcast::channel(2);
        let hook = publisher(tx);
        let items = [item(
            "edge/d1/box-1/cam-1/events",
            &event(2, 7, "update", r#""loitering""#),
        )];
        for _ in 0..10 {
            hook(&items);
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }
}
