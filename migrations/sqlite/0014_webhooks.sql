-- The webhook outbox (src/store/webhooks.rs): one row per event, written in
-- the transaction of the change it reports. `id` is the `webhook-id` of
-- every delivery of it; `payload` is the body exactly as signed.
-- `lease_until` is set while a worker delivers it: a worker that died
-- leaves it to expire, and the row is claimed again.
CREATE TABLE webhook_outbox (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    lease_until BIGINT,
    delivered_at BIGINT,
    failed_at BIGINT,
    last_status BIGINT,
    last_error TEXT
);

-- What the delivery task claims: due, undelivered, not given up.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
-- GET /v1/webhooks/deliveries pages in this order.
CREATE INDEX webhook_outbox_order ON webhook_outbox (created_at, id);
