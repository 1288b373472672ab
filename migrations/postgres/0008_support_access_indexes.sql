-- Look-ups of support access: who listened to a recording (audit events by
-- action and object), a staff member's grants on a call.
CREATE INDEX audit_events_action_object ON audit_events (action, object);
CREATE INDEX grants_requested_by ON grants (requested_by);
CREATE INDEX dispute_calls_call ON dispute_calls (call_id);
