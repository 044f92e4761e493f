-- edge-centre PostgreSQL schema, version 1 (the same tables as SQLite's). Times are milliseconds since the
-- Unix epoch (UTC); `payload` keeps each message as it came (JSON).

-- One row per message of an object's lifecycle (edge-event/4). The node
-- numbers each camera's messages (`seq`, continuing across restarts), so
-- (node, camera, seq) identifies a message: a redelivery is ignored.
CREATE TABLE events (
    node          TEXT    NOT NULL,
    camera        TEXT    NOT NULL,
    seq           BIGINT NOT NULL,
    district      TEXT    NOT NULL,
    object_id     TEXT    NOT NULL,
    type          TEXT    NOT NULL,
    label         TEXT    NOT NULL,
    score         DOUBLE PRECISION    NOT NULL,
    frame_time    BIGINT NOT NULL,
    alerts        TEXT    NOT NULL,
    snapshot_topic TEXT,
    snapshot_sha  TEXT,
    snapshot_omitted TEXT,
    replayed      BIGINT NOT NULL DEFAULT 0,
    received_at   BIGINT NOT NULL,
    payload       TEXT    NOT NULL,
    PRIMARY KEY (node, camera, seq)
);
CREATE INDEX events_time ON events (frame_time DESC);
CREATE INDEX events_object ON events (object_id, seq);
CREATE INDEX events_camera_time ON events (node, camera, frame_time DESC);
CREATE INDEX events_snapshot ON events (snapshot_topic) WHERE snapshot_sha IS NULL;
CREATE INDEX events_label_time ON events (label, frame_time DESC);
CREATE INDEX events_district_time ON events (district, frame_time DESC);

-- The operators' review queue: one row per incident. An object alert
-- (loitering, wrong way) is one incident per object and kind; crowding and
-- camera tamper alarms are one incident from raised to cleared.
CREATE TABLE alerts (
    alert_id      TEXT    PRIMARY KEY,
    node          TEXT    NOT NULL,
    district      TEXT    NOT NULL,
    camera        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    severity      TEXT    NOT NULL,
    time          BIGINT NOT NULL,
    object_id     TEXT,
    label         TEXT,
    rule          TEXT,
    snapshot_topic TEXT,
    snapshot_sha  TEXT,
    cleared_at    BIGINT,
    acked_by      TEXT,
    acked_at      BIGINT,
    received_at   BIGINT NOT NULL,
    payload       TEXT    NOT NULL
);
CREATE INDEX alerts_time ON alerts (time DESC);
CREATE INDEX alerts_open ON alerts (acked_at, time DESC);
CREATE INDEX alerts_snapshot ON alerts (snapshot_topic) WHERE snapshot_sha IS NULL;
CREATE INDEX alerts_camera ON alerts (node, camera, kind, cleared_at);

-- Cumulative per-interval counts (edge-counts/1). A node restart restarts
-- `seq`, never `interval_start`.
CREATE TABLE counts (
    node           TEXT    NOT NULL,
    camera         TEXT    NOT NULL,
    interval_start BIGINT NOT NULL,
    interval_end   BIGINT NOT NULL,
    district       TEXT    NOT NULL,
    seq            BIGINT NOT NULL,
    received_at    BIGINT NOT NULL,
    payload        TEXT    NOT NULL,
    PRIMARY KEY (node, camera, interval_start)
);

-- Current state of each node and camera, and the history of state changes.
CREATE TABLE node_state (
    node        TEXT PRIMARY KEY,
    district    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    since       BIGINT,
    version     TEXT    NOT NULL,
    updated_at  BIGINT NOT NULL,
    payload     TEXT    NOT NULL,
    stats       TEXT
);
CREATE TABLE node_history (
    node   TEXT    NOT NULL,
    state  TEXT    NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX node_history_node ON node_history (node, at);

CREATE TABLE camera_state (
    node        TEXT    NOT NULL,
    camera      TEXT    NOT NULL,
    district    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    since       BIGINT NOT NULL,
    last_error  TEXT,
    health      TEXT    NOT NULL,
    fps_in      DOUBLE PRECISION    NOT NULL,
    status_time BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    removed     BIGINT NOT NULL DEFAULT 0,
    payload     TEXT    NOT NULL,
    PRIMARY KEY (node, camera)
);
CREATE TABLE camera_history (
    node       TEXT    NOT NULL,
    camera     TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    since      BIGINT NOT NULL,
    last_error TEXT,
    health     TEXT    NOT NULL,
    PRIMARY KEY (node, camera, since, state, health)
);

-- Snapshots: the JPEG files live outside the database, named by their
-- SHA-256 (snapshots.dir/ab/abcdef….jpg); `topic` is the latest picture
-- of an object's snapshot topic.
CREATE TABLE snapshots (
    sha256      TEXT    PRIMARY KEY,
    bytes       BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    expired_at  BIGINT
);
CREATE INDEX snapshots_age ON snapshots (received_at);
CREATE TABLE snapshot_topics (
    topic       TEXT    PRIMARY KEY,
    sha256      TEXT    NOT NULL,
    received_at BIGINT NOT NULL
);

-- Messages that could not be stored, and why (never retried).
CREATE TABLE rejected (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic       TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    bytes       BIGINT NOT NULL,
    received_at BIGINT NOT NULL
);
