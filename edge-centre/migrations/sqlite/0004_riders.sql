-- Riders (schema version 4): edge-event/6 carries `riders`, the persons
-- the node saw riding a motorcycle or bicycle (the most seen so far on the
-- object; 0 for every other class and for edge-event/4 and /5, which have
-- no such field). Rows stored before this migration read 0.
ALTER TABLE events ADD COLUMN riders INTEGER NOT NULL DEFAULT 0;
