//! From an MQTT message (topic and payload) to a typed [`Record`], or to a
//! [`Rejected`] naming why it cannot be stored. Pure: no I/O.

use edge_wire::{
    CAMERA_ALERT_SCHEMA, CAMERA_STATUS_SCHEMA, COUNTS_SCHEMA, CameraAlertMessage,
    CameraStatusMessage, CountsMessage, EVENT_SCHEMA, EVENT_SCHEMA_V4, EVENT_SCHEMA_V5,
    EVENT_SCHEMA_V6, EventMessage, NODE_STATUS_SCHEMA, NODE_STATUS_SCHEMA_V3, NodeStatusMessage,
    REPLAY_ANSWER_SCHEMA, ReplayAnswer, STATS_SCHEMA, TopicClass, ZONE_ALERT_SCHEMA,
    ZoneAlertMessage,
};
use serde::Deserialize;

/// Where a message came from (from its topic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub district: String,
    pub node: String,
    pub camera: Option<String>,
}

/// One storable message.
#[derive(Clone, Debug)]
pub enum Record {
    /// `edge-event/7`, `/6`, `/5` or `/4` (from `/events`, or its copy on
    /// `/alerts`: same row; `riders` is 0 before `/6`, `replayed` false
    /// before `/5`).
    Event(Box<EventMessage>),
    /// `edge-replay-answer/1`: what a node sent again for a replay request,
    /// and what it no longer has (recorded as lost, with the reason).
    ReplayAnswer(Box<ReplayAnswer>),
    ZoneAlert(Box<ZoneAlertMessage>),
    CameraAlert(Box<CameraAlertMessage>),
    Counts(Box<CountsMessage>),
    NodeStatus {
        origin: Origin,
        status: Box<NodeStatusMessage>,
    },
    /// An empty retained payload on a camera's status topic: the node no
    /// longer has that camera.
    CameraRemoved {
        origin: Origin,
    },
    CameraStatus {
        origin: Origin,
        status: Box<CameraStatusMessage>,
    },
    /// `edge-stats/3`, kept whole as the node's latest figures.
    Stats {
        origin: Origin,
        json: String,
    },
    /// A JPEG on `{camera}/snapshot/{object id}`; the file is written by
    /// the snapshot store before the batch commits.
    Snapshot {
        origin: Origin,
        topic: String,
        object_id: String,
        jpeg: Vec<u8>,
    },
}

/// Why a message was skipped: counted, logged with its topic, stored in the
/// `rejected` table and acknowledged (so it never blocks the queue).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("topic outside the tree {{prefix}}/{{district}}/{{node}}/…")]
    OutsideTree,
    #[error("payload of {bytes} bytes is over the limit of {limit} (mqtt.max_payload_bytes)")]
    TooLarge { bytes: usize, limit: usize },
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("unknown schema {0:?} on this topic")]
    UnknownSchema(String),
    #[error("not a valid {schema} message: {error}")]
    Invalid { schema: String, error: String },
    #[error("not a JPEG picture")]
    NotJpeg,
    #[error("message names node {named:?} but came on the topic of node {topic:?}")]
    WrongNode { named: String, topic: String },
}

impl Rejected {
    /// A short stable name for counters and the `rejected.reason` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejected::OutsideTree => "outside_tree",
            Rejected::TooLarge { .. } => "too_large",
            Rejected::NotJson(_) => "not_json",
            Rejected::UnknownSchema(_) => "unknown_schema",
            Rejected::Invalid { .. } => "invalid",
            Rejected::NotJpeg => "not_jpeg",
            Rejected::WrongNode { .. } => "wrong_node",
        }
    }
}

#[derive(Deserialize)]
struct SchemaOnly {
    schema: String,
}

/// Decodes one message of the tree under `prefix`. Retained-message
/// deletions on other topics than a camera status decode to `Ok(None)`.
pub fn decode(
    prefix: &str,
    topic: &str,
    payload: &[u8],
    max_payload: usize,
) -> Result<Option<Record>, Rejected> {
    let addr = edge_wire::parse_topic(prefix, topic).ok_or(Rejected::OutsideTree)?;
    if payload.len() > max_payload {
        return Err(Rejected::TooLarge {
            bytes: payload.len(),
            limit: max_payload,
        });
    }
    let origin = Origin {
        district: addr.district.to_string(),
        node: addr.node.to_string(),
        camera: addr.camera.map(str::to_string),
    };
    if payload.is_empty() {
        return Ok(match (addr.class, addr.camera) {
            (TopicClass::Status, Some(_)) => Some(Record::CameraRemoved { origin }),
            _ => None,
        });
    }
    // The replay requests of the centres themselves (`{node}/replay`).
    if addr.class == TopicClass::Replay && addr.camera.is_none() {
        return Ok(None);
    }
    if addr.class == TopicClass::Snapshots {
        // JPEG: SOI marker FF D8 FF.
        if !payload.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Err(Rejected::NotJpeg);
        }
        return Ok(Some(Record::Snapshot {
            origin,
            topic: topic.to_string(),
            object_id: addr.snapshot_of.unwrap_or_default().to_string(),
            jpeg: payload.to_vec(),
        }));
    }
    let schema = serde_json::from_slice::<SchemaOnly>(payload)
        .map_err(|e| Rejected::NotJson(e.to_string()))?
        .schema;
    let record = match (addr.class, addr.camera.is_some(), schema.as_str()) {
        (
            TopicClass::Events | TopicClass::Alerts,
            true,
            EVENT_SCHEMA | EVENT_SCHEMA_V6 | EVENT_SCHEMA_V5 | EVENT_SCHEMA_V4,
        ) => Record::Event(typed(&schema, payload)?),
        (TopicClass::Alerts, true, ZONE_ALERT_SCHEMA) => {
            Record::ZoneAlert(typed(&schema, payload)?)
        }
        (TopicClass::Alerts, true, CAMERA_ALERT_SCHEMA) => {
            Record::CameraAlert(typed(&schema, payload)?)
        }
        (TopicClass::Counts, true, COUNTS_SCHEMA) => Record::Counts(typed(&schema, payload)?),
        (TopicClass::Replay, true, REPLAY_ANSWER_SCHEMA) => {
            Record::ReplayAnswer(typed(&schema, payload)?)
        }
        (TopicClass::Status, false, NODE_STATUS_SCHEMA | NODE_STATUS_SCHEMA_V3) => {
            Record::NodeStatus {
                origin,
                status: typed(&schema, payload)?,
            }
        }
        (TopicClass::Status, true, CAMERA_STATUS_SCHEMA) => Record::CameraStatus {
            origin,
            status: typed(&schema, payload)?,
        },
        (TopicClass::Stats, false, STATS_SCHEMA) => {
            // Validated but kept whole: the console shows it as it came.
            let _: Box<edge_wire::StatsMessage> = typed(&schema, payload)?;
            Record::Stats {
                origin,
                json: String::from_utf8_lossy(payload).into_owned(),
            }
        }
        _ => return Err(Rejected::UnknownSchema(schema)),
    };
    check_node(&record, addr.node)?;
    Ok(Some(record))
}

fn typed<T: serde::de::DeserializeOwned>(schema: &str, payload: &[u8]) -> Result<Box<T>, Rejected> {
    serde_json::from_slice(payload).map_err(|e| Rejected::Invalid {
        schema: schema.to_string(),
        error: e.to_string(),
    })
}

/// A message must come on its own node's topics (a box cannot write
/// another box's rows).
fn check_node(record: &Record, topic_node: &str) -> Result<(), Rejected> {
    let named = match record {
        Record::Event(m) => &m.node,
        Record::ZoneAlert(m) => &m.node,
        Record::CameraAlert(m) => &m.node,
        Record::Counts(m) => &m.node,
        Record::ReplayAnswer(m) => &m.node,
        Record::NodeStatus { status, .. } => &status.node,
        Record::CameraStatus { status, .. } => &status.node,
        Record::CameraRemoved { .. } | Record::Stats { .. } | Record::Snapshot { .. } => {
            return Ok(());
        }
    };
    if named == topic_node {
        Ok(())
    } else {
        Err(Rejected::WrongNode {
            named: named.clone(),
            topic: topic_node.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn event_json(seq: u64) -> String {
        format!(
            r#"{{"schema":"edge-event/4","id":"box-1.cam-1.19a.7","seq":{seq},"type":"new","node":"box-1","district":"d1","camera":"cam-1","label":"person","class_id":0,"track_id":7,"score":0.8,"top_score":0.8,"start_time":"2026-12-07T08:00:00.000Z","end_time":null,"frame_time":"2026-12-07T08:00:00.000Z","box":{{"x1":0.1,"y1":0.1,"x2":0.2,"y2":0.3}},"frame_size":{{"width":640,"height":480}},"snapshot":null,"snapshot_omitted":null,"current_zones":[],"entered_zones":[],"stationary":false,"alerts":[],"alert":null,"end_reason":null}}"#
        )
    }

    #[test]
    fn an_event_decodes_on_events_and_alerts() {
        for t in ["edge/d1/box-1/cam-1/events", "edge/d1/box-1/cam-1/alerts"] {
            let r = decode("edge", t, event_json(3).as_bytes(), MAX)
                .unwrap()
                .unwrap();
            let Record::Event(e) = r else { panic!("{r:?}") };
            assert_eq!(e.seq, 3);
        }
    }

    /// Every event schema the centre accepts: `/6` with its `riders`, `/5`
    /// and `/4` (without them: 0).
    #[test]
    fn event_schemas_4_5_and_6_decode_with_their_riders() {
        let v4 = event_json(5);
        let v5 = v4.replace("edge-event/4", "edge-event/5").replace(
            "\"end_reason\":null}",
            "\"end_reason\":null,\"replayed\":false}",
        );
        let v6 = v5
            .replace("edge-event/5", "edge-event/6")
            .replace(
                "\"label\":\"person\",\"class_id\":0",
                "\"label\":\"motorcycle\",\"class_id\":3",
            )
            .replace("\"replayed\":false}", "\"replayed\":false,\"riders\":2}");
        for (json, schema, riders) in [
            (v4, "edge-event/4", 0),
            (v5, "edge-event/5", 0),
            (v6, "edge-event/6", 2),
        ] {
            let r = decode("edge", "edge/d1/box-1/cam-1/events", json.as_bytes(), MAX)
                .unwrap()
                .unwrap();
            let Record::Event(e) = r else { panic!("{r:?}") };
            assert_eq!((e.schema.as_str(), e.riders), (schema, riders), "{json}");
        }
        assert_eq!(EVENT_SCHEMA, "edge-event/7");
    }

    #[test]
    fn bad_input_is_named() {
        let ev = event_json(1);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("other/x", ev.clone().into_bytes(), "outside_tree"),
            (
                "edge/d1/box-1/cam-1/events",
                b"{not json".to_vec(),
                "not_json",
            ),
            (
                "edge/d1/box-1/cam-1/events",
                ev.replace("edge-event/4", "edge-event/99").into_bytes(),
                "unknown_schema",
            ),
            (
                "edge/d1/box-1/cam-1/events",
                ev.replace("\"seq\":1", "\"seq\":\"one\"").into_bytes(),
                "invalid",
            ),
            (
                "edge/d1/box-1/cam-1/events",
                vec![b' '; MAX + 1],
                "too_large",
            ),
            (
                "edge/d1/box-1/cam-1/snapshot/x",
                b"GIF89a".to_vec(),
                "not_jpeg",
            ),
            (
                "edge/d1/box-2/cam-1/events",
                ev.clone().into_bytes(),
                "wrong_node",
            ),
            // An event is not a counts message.
            (
                "edge/d1/box-1/cam-1/counts",
                ev.into_bytes(),
                "unknown_schema",
            ),
        ];
        for (topic, payload, want) in cases {
            let got = decode("edge", topic, &payload, MAX).unwrap_err();
            assert_eq!(got.kind(), want, "{topic}: {got}");
        }
    }

    #[test]
    fn an_empty_camera_status_means_removed() {
        let r = decode("edge", "edge/d1/box-1/cam-9/status", b"", MAX).unwrap();
        assert!(matches!(r, Some(Record::CameraRemoved { .. })));
        assert!(
            decode("edge", "edge/d1/box-1/stats", b"", MAX)
                .unwrap()
                .is_none()
        );
    }
}
