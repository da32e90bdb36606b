-- Due timers that belong to a request rather than to a clock (the deadlines table is keyed by clock):
--   kind 'condition': a time-based condition rule (a repair open 7 days, a dispute unsettled 2 days) comes true;
--                     ref is the rule's name.
--   kind 'climb':     the next rung of a condition escalation that climbs; ref is the escalation id.
-- Fired by due time with FOR UPDATE SKIP LOCKED like the clock deadlines; fired rows stay as the record.
CREATE TABLE request_timers (
    id bigserial PRIMARY KEY,
    request_no text NOT NULL,
    kind text NOT NULL,
    ref text NOT NULL,
    due_at timestamptz NOT NULL,
    token text NOT NULL,
    fired_at timestamptz,
    CONSTRAINT request_timers_token UNIQUE (request_no, kind, ref, token)
);
CREATE INDEX request_timers_due ON request_timers (due_at) WHERE fired_at IS NULL;
