//! The MQTT topic tree: every topic name of the node, built from
//! `{prefix}/{district}/{node}`, and the reverse mapping from a topic to its
//! camera and class of traffic (for the byte counters of `edge-stats/3`).

/// Builds every topic from `{prefix}/{district}/{node}`.
#[derive(Clone, Debug)]
pub struct Topics {
    base: String,
}

impl Topics {
    /// The tree of node `node` in `district`, under `prefix` (a trailing
    /// `/` is ignored).
    pub fn new(prefix: &str, district: &str, node: &str) -> Self {
        Self {
            base: format!("{}/{district}/{node}", prefix.trim_end_matches('/')),
        }
    }
    pub fn base(&self) -> &str {
        &self.base
    }
    pub fn node_status(&self) -> String {
        format!("{}/status", self.base)
    }
    pub fn stats(&self) -> String {
        format!("{}/stats", self.base)
    }
    pub fn camera_status(&self, camera: &str) -> String {
        format!("{}/{camera}/status", self.base)
    }
    pub fn events(&self, camera: &str) -> String {
        format!("{}/{camera}/events", self.base)
    }
    pub fn alerts(&self, camera: &str) -> String {
        format!("{}/{camera}/alerts", self.base)
    }
    pub fn counts(&self, camera: &str) -> String {
        format!("{}/{camera}/counts", self.base)
    }
    pub fn snapshot(&self, camera: &str, event_id: &str) -> String {
        format!("{}/{camera}/snapshot/{event_id}", self.base)
    }
    /// Replay requests to this node (centre → node, `edge-replay-request/1`).
    pub fn replay(&self) -> String {
        format!("{}/replay", self.base)
    }
    /// The node's answers to replay requests for `camera` (node → centre,
    /// `edge-replay-answer/1`).
    pub fn replay_answer(&self, camera: &str) -> String {
        format!("{}/{camera}/replayed", self.base)
    }
    /// Every camera's status topic of this node (a filter).
    pub fn camera_statuses(&self) -> String {
        format!("{}/+/status", self.base)
    }
    /// The camera whose status topic `topic` is, if it is one.
    pub fn status_camera<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix('/')?;
        let camera = rest.strip_suffix("/status")?;
        (!camera.is_empty() && !camera.contains('/')).then_some(camera)
    }
    /// Every topic of this node.
    pub fn all(&self) -> String {
        format!("{}/#", self.base)
    }

    /// Which camera (if any) and which class of traffic a topic of this
    /// node is; `None` for a topic outside the node's tree.
    pub fn classify<'a>(&self, topic: &'a str) -> Option<(Option<&'a str>, TopicClass)> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix('/')?;
        match rest {
            "status" => return Some((None, TopicClass::Status)),
            "stats" => return Some((None, TopicClass::Stats)),
            "replay" => return Some((None, TopicClass::Replay)),
            _ => {}
        }
        let (camera, kind) = rest.split_once('/')?;
        let class = match kind {
            "status" => TopicClass::Status,
            "events" => TopicClass::Events,
            "alerts" => TopicClass::Alerts,
            "counts" => TopicClass::Counts,
            "replayed" => TopicClass::Replay,
            k if k.starts_with("snapshot/") => TopicClass::Snapshots,
            _ => return None,
        };
        Some((Some(camera), class))
    }
}

/// A topic of the tree read back: who published it and what it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address<'a> {
    pub district: &'a str,
    pub node: &'a str,
    /// `None` for the node's own topics (`status`, `stats`).
    pub camera: Option<&'a str>,
    pub class: TopicClass,
    /// The object id of a snapshot topic (`…/snapshot/{id}`).
    pub snapshot_of: Option<&'a str>,
}

/// Reads `topic` back into its district, node, camera and class, if it is a
/// topic of the tree under `prefix` (a trailing `/` is ignored); `None` for
/// anything else. The inverse of [`Topics`].
pub fn parse<'a>(prefix: &str, topic: &'a str) -> Option<Address<'a>> {
    let rest = topic
        .strip_prefix(prefix.trim_end_matches('/'))?
        .strip_prefix('/')?;
    let mut parts = rest.splitn(4, '/');
    let district = parts.next().filter(|s| !s.is_empty())?;
    let node = parts.next().filter(|s| !s.is_empty())?;
    let third = parts.next()?;
    let addr = |camera, class, snapshot_of| {
        Some(Address {
            district,
            node,
            camera,
            class,
            snapshot_of,
        })
    };
    let Some(fourth) = parts.next() else {
        return match third {
            "status" => addr(None, TopicClass::Status, None),
            "stats" => addr(None, TopicClass::Stats, None),
            "replay" => addr(None, TopicClass::Replay, None),
            _ => None,
        };
    };
    if third.is_empty() {
        return None;
    }
    let camera = Some(third);
    match fourth {
        "status" => addr(camera, TopicClass::Status, None),
        "events" => addr(camera, TopicClass::Events, None),
        "alerts" => addr(camera, TopicClass::Alerts, None),
        "counts" => addr(camera, TopicClass::Counts, None),
        "replayed" => addr(camera, TopicClass::Replay, None),
        s => {
            let id = s.strip_prefix("snapshot/")?;
            (!id.is_empty() && !id.contains('/'))
                .then(|| addr(camera, TopicClass::Snapshots, Some(id)))?
        }
    }
}

/// Classes of traffic counted in `edge-stats/3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicClass {
    Events,
    Alerts,
    Snapshots,
    Counts,
    Status,
    Stats,
    /// The gap replay protocol: requests (`{base}/replay`, no camera) and
    /// answers (`{base}/{camera}/replayed`). Counted with `status` bytes.
    Replay,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_tree() {
        let t = Topics::new("hanoi/", "hoan-kiem", "box-1");
        assert_eq!(t.node_status(), "hanoi/hoan-kiem/box-1/status");
        assert_eq!(
            t.camera_status("cam-1"),
            "hanoi/hoan-kiem/box-1/cam-1/status"
        );
        assert_eq!(t.events("cam-1"), "hanoi/hoan-kiem/box-1/cam-1/events");
        assert_eq!(
            t.snapshot("cam-1", "e1"),
            "hanoi/hoan-kiem/box-1/cam-1/snapshot/e1"
        );
        assert_eq!(t.camera_statuses(), "hanoi/hoan-kiem/box-1/+/status");
    }

    /// Only a camera's status topic of this node names a camera.
    #[test]
    fn status_camera_reads_back_the_camera() {
        let t = Topics::new("hanoi", "hoan-kiem", "box-1");
        assert_eq!(t.status_camera(&t.camera_status("cam-1")), Some("cam-1"));
        for other in [
            t.node_status(),
            t.events("cam-1"),
            "hanoi/hoan-kiem/box-2/cam-1/status".to_string(),
            "hanoi/hoan-kiem/box-1/a/b/status".to_string(),
            "hanoi/hoan-kiem/box-1//status".to_string(),
        ] {
            assert_eq!(t.status_camera(&other), None, "{other}");
        }
    }
    /// Every topic the tree builds reads back to its parts; others do not.
    #[test]
    fn parse_reads_back_every_topic() {
        let t = Topics::new("hanoi", "hoan-kiem", "box-1");
        let ev = t.events("cam-1");
        let a = parse("hanoi/", &ev).unwrap();
        assert_eq!(
            (a.district, a.node, a.camera, a.class),
            ("hoan-kiem", "box-1", Some("cam-1"), TopicClass::Events)
        );
        assert_eq!(
            parse("hanoi", &t.alerts("c")).unwrap().class,
            TopicClass::Alerts
        );
        assert_eq!(
            parse("hanoi", &t.counts("c")).unwrap().class,
            TopicClass::Counts
        );
        assert_eq!(
            parse("hanoi", &t.camera_status("c")).unwrap().camera,
            Some("c")
        );
        let ns = t.node_status();
        let n = parse("hanoi", &ns).unwrap();
        assert_eq!((n.camera, n.class), (None, TopicClass::Status));
        assert_eq!(parse("hanoi", &t.stats()).unwrap().class, TopicClass::Stats);
        let st = t.snapshot("c", "box-1.c.1a.7");
        let s = parse("hanoi", &st).unwrap();
        assert_eq!(
            (s.class, s.snapshot_of),
            (TopicClass::Snapshots, Some("box-1.c.1a.7"))
        );
        let rt = t.replay();
        let r = parse("hanoi", &rt).unwrap();
        assert_eq!((r.camera, r.class), (None, TopicClass::Replay));
        let at = t.replay_answer("c");
        let a = parse("hanoi", &at).unwrap();
        assert_eq!((a.camera, a.class), (Some("c"), TopicClass::Replay));
        assert_eq!(t.classify(&rt), Some((None, TopicClass::Replay)));
        for bad in [
            "other/hoan-kiem/box-1/c/events",
            "hanoi/hoan-kiem/box-1/c/whatever",
            "hanoi/hoan-kiem/box-1/c/events/x",
            "hanoi/hoan-kiem/box-1/c/snapshot/",
            "hanoi/hoan-kiem/box-1//events",
            "hanoi//box-1/status",
            "hanoi/hoan-kiem/box-1",
            "hanoiX/hoan-kiem/box-1/status",
        ] {
            assert_eq!(parse("hanoi", bad), None, "{bad}");
        }
    }
}
