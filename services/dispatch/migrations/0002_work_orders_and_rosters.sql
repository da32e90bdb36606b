-- Dispatch's own state: rosters as data (technicians, the shift calendar, on-call people, leads), the work orders
-- with the columns the hot paths and timers query, and the once-only records of handovers and daily checks.

-- `load` is the number of work orders the technician holds now, and it changes only in the transaction that changes
-- who holds a work order (atomic UPDATE ... SET load = load + delta), so it stays exact across instances.
CREATE TABLE technicians (
    technician_id text PRIMARY KEY,
    property_id text NOT NULL,
    department text NOT NULL,
    display_name text,
    skills text[] NOT NULL DEFAULT '{}',
    zones text[] NOT NULL DEFAULT '{}',
    absent boolean NOT NULL DEFAULT false,
    load integer NOT NULL DEFAULT 0 CHECK (load >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX technicians_property_department ON technicians (property_id, department);

-- The shift calendar. shift_date NULL is a standing entry (works that shift every day), and a dated entry adds a
-- shift on that local date. Absence (technicians.absent) overrides both.
CREATE TABLE shifts (
    id bigserial PRIMARY KEY,
    technician_id text NOT NULL REFERENCES technicians ON DELETE CASCADE,
    shift text NOT NULL,
    shift_date date,
    lead boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX shifts_once ON shifts (technician_id, shift, coalesce(shift_date, '0001-01-01'::date));
CREATE INDEX shifts_date ON shifts (shift_date);

-- night NULL: the department's standing night on-call person, and a dated row overrides it for that night.
CREATE TABLE on_call (
    property_id text NOT NULL,
    department text NOT NULL,
    night date,
    technician_id text NOT NULL REFERENCES technicians ON DELETE CASCADE
);
CREATE UNIQUE INDEX on_call_once ON on_call (property_id, department, coalesce(night, '0001-01-01'::date));

CREATE TABLE leads (
    property_id text NOT NULL,
    department text NOT NULL,
    technician_id text NOT NULL REFERENCES technicians ON DELETE CASCADE,
    PRIMARY KEY (property_id, department)
);

-- Round robin's position per property and department.
CREATE TABLE rr_cursors (
    property_id text NOT NULL,
    department text NOT NULL,
    cursor text,
    PRIMARY KEY (property_id, department)
);

-- `origin` says which message opened the work order: 'registered' (one per request, whichever instance or
-- delivery gets there first), 'reclassified:<event id>' or 'follow_up:<follow_up_id>'. The aggregate itself
-- (history, quote, consent, materials...) is `doc`, and the columns are what queries filter on.
CREATE TABLE work_orders (
    id uuid PRIMARY KEY,
    request_no text NOT NULL,
    origin text NOT NULL,
    property_id text NOT NULL,
    department text NOT NULL,
    state text NOT NULL,
    technician_id text,
    accept_by timestamptz,
    due_at timestamptz,
    follow_up_of uuid,
    created_at timestamptz NOT NULL,
    resolved_at timestamptz,
    closed_at timestamptz,
    updated_at timestamptz NOT NULL,
    version integer NOT NULL,
    doc jsonb NOT NULL,
    CONSTRAINT work_orders_once UNIQUE (request_no, origin)
);
CREATE INDEX work_orders_request ON work_orders (request_no, created_at);
-- The acceptance timer's due rows only.
CREATE INDEX work_orders_accept_due ON work_orders (accept_by) WHERE state IN ('assigned', 'offered');
-- Open work per property and department: handovers, the daily check, the backlog metric.
CREATE INDEX work_orders_open ON work_orders (property_id, department, state)
    WHERE state NOT IN ('closed', 'cancelled');
CREATE INDEX work_orders_resolved_at ON work_orders (property_id, resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX work_orders_closed_at ON work_orders (property_id, closed_at) WHERE closed_at IS NOT NULL;

-- Requests intake registered as duplicates of another: no second work order, but remembered so that a later
-- RequestCancelled for them is not waited on forever.
CREATE TABLE linked_requests (
    request_no text PRIMARY KEY,
    duplicate_of text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One handover per property, department and shift occurrence: the unique key makes it fire once.
CREATE TABLE handovers (
    id uuid PRIMARY KEY,
    property_id text NOT NULL,
    department text NOT NULL,
    incoming_shift text NOT NULL,
    shift_date date NOT NULL,
    outgoing_shift text,
    incoming_lead text,
    published_at timestamptz NOT NULL,
    ack_due_at timestamptz NOT NULL,
    items jsonb NOT NULL,
    acknowledged_by text,
    acknowledged_at timestamptz,
    overdue_reported boolean NOT NULL DEFAULT false,
    CONSTRAINT handovers_once UNIQUE (property_id, department, incoming_shift, shift_date)
);
CREATE INDEX handovers_ack_due ON handovers (ack_due_at) WHERE acknowledged_at IS NULL AND NOT overdue_reported;
CREATE INDEX handovers_unacknowledged ON handovers (department) WHERE acknowledged_at IS NULL;

-- One daily completion check per property and local day.
CREATE TABLE daily_checks (
    id uuid PRIMARY KEY,
    property_id text NOT NULL,
    day date NOT NULL,
    generated_at timestamptz NOT NULL,
    report jsonb NOT NULL,
    CONSTRAINT daily_checks_once UNIQUE (property_id, day)
);
CREATE TABLE daily_check_lines (
    property_id text NOT NULL,
    day date NOT NULL,
    department text NOT NULL,
    done integer NOT NULL,
    open integer NOT NULL,
    overdue integer NOT NULL,
    cancelled integer NOT NULL,
    PRIMARY KEY (day, property_id, department)
);
