-- Escalation state: policy versions, calendar years, request facts, clocks, due timers, ladder runs, and the
-- counter tables the metrics collector reads on scrape (restart-proof, equal on every replica).

CREATE TABLE policy_versions (
    version integer PRIMARY KEY,
    policy jsonb NOT NULL,
    digest text NOT NULL,
    source text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Holidays and make-up working days of a year as loaded by ops; the highest version of a year wins.
CREATE TABLE calendar_years (
    id bigserial PRIMARY KEY,
    year integer NOT NULL,
    version integer NOT NULL,
    data jsonb NOT NULL,
    source text NOT NULL,
    loaded_by text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT calendar_year_version UNIQUE (year, version)
);

-- What escalation knows about a request (or a handover: subject = handover id). Every handler locks this row
-- first, so the events of one subject are applied one at a time whatever their arrival order.
CREATE TABLE requests (
    request_no text PRIMARY KEY,
    registered boolean NOT NULL DEFAULT false,
    policy_version integer,
    property_id text,
    building text,
    unit text,
    channel text,
    category text,
    subcategory text,
    priority text,
    emergency boolean NOT NULL DEFAULT false,
    department text,
    registered_at timestamptz,
    resolved_at timestamptz,
    reopen_count integer NOT NULL DEFAULT 0,
    cluster_size integer NOT NULL DEFAULT 1,
    vip boolean NOT NULL DEFAULT false,
    compensation_demanded boolean NOT NULL DEFAULT false,
    facts jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX requests_unit_subclass ON requests (property_id, unit, subcategory, resolved_at)
    WHERE unit IS NOT NULL;

-- Clock facts that arrived before their clock started (events overtake each other): applied at the start.
CREATE TABLE pending_facts (
    id bigserial PRIMARY KEY,
    request_no text NOT NULL,
    clock text NOT NULL,          -- a clock name or '*'
    verb text NOT NULL,
    at timestamptz NOT NULL,
    reason text
);
CREATE INDEX pending_facts_request ON pending_facts (request_no);

CREATE TABLE clocks (
    clock_id uuid PRIMARY KEY,
    request_no text NOT NULL,
    kind text NOT NULL,
    state text NOT NULL,
    policy_version integer NOT NULL,
    rule text NOT NULL,
    target_seconds integer NOT NULL,
    started_at timestamptz NOT NULL,
    deadline timestamptz NOT NULL,
    warn_at timestamptz,
    warned boolean NOT NULL DEFAULT false,
    breached_at timestamptz,
    met_at timestamptz,
    elapsed_seconds integer,
    calendar_fallback boolean NOT NULL DEFAULT false,
    category text NOT NULL,
    priority text NOT NULL,
    channel text NOT NULL,
    property_id text NOT NULL,
    data jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT clocks_one_per_kind UNIQUE (request_no, kind)
);
-- Open clocks only: the at-risk list and the open-clock gauges never read the (large) closed history.
CREATE INDEX clocks_open_warn ON clocks (warn_at) WHERE state IN ('running', 'paused', 'breached');
CREATE INDEX clocks_open_property ON clocks (property_id, deadline) WHERE state IN ('running', 'paused', 'breached');

-- One row per due timer. Fired rows stay (fired_at) as the record that each fired exactly once.
CREATE TABLE deadlines (
    id bigserial PRIMARY KEY,
    clock_id uuid NOT NULL REFERENCES clocks ON DELETE CASCADE,
    kind text NOT NULL,
    due_at timestamptz NOT NULL,
    token text NOT NULL,
    fired_at timestamptz,
    CONSTRAINT deadlines_token UNIQUE (clock_id, token)
);
CREATE INDEX deadlines_due ON deadlines (due_at) WHERE fired_at IS NULL;

-- Ladder runs (after a breach, or a condition rule) with their rung history.
CREATE TABLE escalations (
    escalation_id uuid PRIMARY KEY,
    request_no text NOT NULL,
    clock_id uuid,
    clock text,
    source text NOT NULL,
    rule text,
    reason text NOT NULL,
    rung text NOT NULL,
    rung_index integer NOT NULL,
    climbs jsonb NOT NULL,
    acknowledged_by text,
    acknowledged_at timestamptz,
    stopped boolean NOT NULL DEFAULT false,
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX escalations_request ON escalations (request_no, created_at);

-- Condition rules already fired for a request: a rule escalates a case once.
CREATE TABLE condition_fired (
    request_no text NOT NULL,
    rule text NOT NULL,
    escalation_id uuid NOT NULL,
    fired_at timestamptz NOT NULL,
    PRIMARY KEY (request_no, rule)
);

-- Counters kept in the same transaction as each verdict, so a scrape reads a few hundred rows, not every clock.
-- `shard` is chosen per process: replicas bumping the same label set do not queue on one hot row (the
-- collector sums the shards).
CREATE TABLE verdict_counts (
    shard smallint NOT NULL,
    clock text NOT NULL,
    outcome text NOT NULL,
    category text NOT NULL,
    priority text NOT NULL,
    channel text NOT NULL,
    property_id text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (clock, outcome, category, priority, channel, property_id, shard)
);

-- Elapsed time of met clocks: one row per label set and histogram bucket (not cumulative), with the sum.
CREATE TABLE elapsed_buckets (
    shard smallint NOT NULL,
    clock text NOT NULL,
    category text NOT NULL,
    priority text NOT NULL,
    channel text NOT NULL,
    property_id text NOT NULL,
    bucket integer NOT NULL,
    n bigint NOT NULL,
    total_seconds double precision NOT NULL,
    PRIMARY KEY (clock, category, priority, channel, property_id, bucket, shard)
);

CREATE TABLE escalation_counts (
    shard smallint NOT NULL,
    rung text NOT NULL,
    reason text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (rung, reason, shard)
);

CREATE TABLE fallback_counts (
    shard smallint NOT NULL,
    clock text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (clock, shard)
);
