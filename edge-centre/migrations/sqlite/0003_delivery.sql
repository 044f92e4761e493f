-- Gap recovery (schema version 3). Times are milliseconds since the epoch.

-- The highest event `seq` stored per camera: an event above it + 1 opens a
-- gap. A camera's history starts at the first message the centre receives.
CREATE TABLE seq_state (
    node     TEXT    NOT NULL,
    camera   TEXT    NOT NULL,
    district TEXT    NOT NULL,
    max_seq  INTEGER NOT NULL,
    PRIMARY KEY (node, camera)
);

-- One row per run of `seq` found missing. `state`: open (waiting, maybe
-- requested), recovered (every message came, some by replay), arrived
-- (every message came late, none by replay), lost (the node could not send
-- some or all again: `lost` of them, `reasons` says why).
-- `lease_owner`/`lease_until`: the centre instance that may request it now.
CREATE TABLE gaps (
    node          TEXT    NOT NULL,
    camera        TEXT    NOT NULL,
    first         INTEGER NOT NULL,
    last          INTEGER NOT NULL,
    district      TEXT    NOT NULL,
    found_at      INTEGER NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'open',
    requests      INTEGER NOT NULL DEFAULT 0,
    request_id    TEXT,
    requested_at  INTEGER,
    answered_at   INTEGER,
    lease_owner   TEXT,
    lease_until   INTEGER,
    replayed      INTEGER NOT NULL DEFAULT 0,
    lost          INTEGER NOT NULL DEFAULT 0,
    reasons       TEXT,
    closed_at     INTEGER,
    PRIMARY KEY (node, camera, first)
);
CREATE INDEX gaps_open ON gaps (state, found_at);

-- Runs a node said it cannot send again, with its reason (evicted, expired,
-- not_stored, unknown) or the centre's (no_answer).
CREATE TABLE lost (
    node        TEXT    NOT NULL,
    camera      TEXT    NOT NULL,
    first       INTEGER NOT NULL,
    last        INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    request_id  TEXT,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (node, camera, first)
);

CREATE INDEX events_replayed ON events (node, camera, seq) WHERE replayed = 1;

-- The console's search: newest first in the page order (time, then node,
-- camera, seq: the cursor), so an unfiltered page reads 50 index entries
-- instead of sorting the table; and by type.
DROP INDEX events_time;
CREATE INDEX events_time ON events (frame_time DESC, node DESC, camera DESC, seq DESC);
CREATE INDEX events_type_time ON events (type, frame_time DESC);
