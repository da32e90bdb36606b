"""DDL of the plumbing tables every service keeps in its own schema (applied by its first migration)."""

PLUMBING_SQL = [
    # Events written in the same transaction as the state they describe; deleted once confirmed.
    """CREATE TABLE outbox (
        id bigserial PRIMARY KEY,
        event_id uuid NOT NULL UNIQUE,
        exchange text NOT NULL,
        routing_key text NOT NULL,
        body jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    # Ids of consumed messages, recorded with their effect: a redelivery finds its id and does nothing.
    """CREATE TABLE inbox (
        event_id text PRIMARY KEY,
        queue text NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX inbox_processed_at ON inbox (processed_at)",
    # This service's part of each request's timeline: every event it published about the request.
    """CREATE TABLE timeline (
        id bigserial PRIMARY KEY,
        request_no text NOT NULL,
        at timestamptz NOT NULL,
        event_type text NOT NULL,
        event_id uuid NOT NULL,
        data jsonb NOT NULL
    )""",
    "CREATE INDEX timeline_request_no ON timeline (request_no, at)",
]
