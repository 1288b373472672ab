-- Several nodes on one database (src/store/nodes.rs): every call and
-- recording names the node that owns it, so that a node's start-up (and
-- its periodic reconciliation) ends only its own open calls and
-- recordings, never another live node's. Rows written before nodes
-- existed have '' and are claimed by whichever node reconciles first.
ALTER TABLE calls ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE recordings ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE INDEX calls_open_by_node ON calls(node) WHERE end_at IS NULL;
CREATE INDEX recordings_open_by_node ON recordings(node) WHERE state = 'recording';
