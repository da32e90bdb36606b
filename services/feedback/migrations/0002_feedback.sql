-- Feedback's projections of other services' facts, and its own records: return-visit decisions and visits,
-- reply letters with every version, praise, supervisor audits, surveys and the published monthly reports.

-- What feedback knows of a request (RequestRegistered, RequestReclassified, WorkOrderAssigned, WorkOrderResolved).
CREATE TABLE requests (
    request_no text PRIMARY KEY,
    property_id text NOT NULL,
    building text,
    unit text,
    area text,
    channel text NOT NULL,
    category text NOT NULL,
    subcategory text,
    complaint_valid boolean,
    validity text,
    paid_service boolean NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL,
    department text,
    work_order_id uuid,
    resolved_at timestamptz,
    fee_cents integer
);
CREATE INDEX requests_registered_at ON requests (registered_at);
CREATE INDEX requests_complaints ON requests (registered_at) WHERE category = 'complaint';

-- One decision per resolved work order, kept whether or not a visit follows (the audit trail of the sample).
CREATE TABLE visit_decisions (
    work_order_id uuid PRIMARY KEY,
    request_no text NOT NULL,
    required boolean NOT NULL,
    reason text,
    seed_id text NOT NULL,
    draw double precision NOT NULL,
    rate double precision NOT NULL,
    resolved_at timestamptz NOT NULL,
    due_at timestamptz,
    decided_at timestamptz NOT NULL,
    visit_id uuid
);
CREATE INDEX visit_decisions_request ON visit_decisions (request_no);

CREATE TABLE return_visits (
    visit_id uuid PRIMARY KEY,
    request_no text NOT NULL,
    work_order_id uuid,
    property_id text NOT NULL,
    department text,
    paid_service boolean NOT NULL,
    reason text NOT NULL,
    subject jsonb NOT NULL,
    resolved_at timestamptz NOT NULL,
    scheduled_at timestamptz NOT NULL,
    due_at timestamptz NOT NULL,
    seed_id text NOT NULL,
    draw double precision NOT NULL,
    rate double precision NOT NULL,
    state text NOT NULL,
    attempts jsonb NOT NULL DEFAULT '[]',
    next_attempt_at timestamptz,
    give_up_at timestamptz,
    outcome jsonb,
    level text,
    score integer,
    done_at timestamptz,
    failed_at timestamptz,
    follow_up jsonb
);
CREATE INDEX return_visits_request ON return_visits (request_no);
CREATE INDEX return_visits_resolved ON return_visits (resolved_at);
CREATE INDEX return_visits_done ON return_visits (done_at) WHERE done_at IS NOT NULL;
CREATE INDEX return_visits_failed ON return_visits (failed_at) WHERE failed_at IS NOT NULL;
CREATE INDEX return_visits_due ON return_visits (due_at) WHERE state = 'scheduled';
CREATE INDEX return_visits_give_up ON return_visits (give_up_at) WHERE state = 'scheduled' AND give_up_at IS NOT NULL;

-- Clocks as escalation settled them (met or breached), for attainment in the month they settled.
CREATE TABLE clock_outcomes (
    clock_id uuid PRIMARY KEY,
    request_no text NOT NULL,
    clock text NOT NULL,
    outcome text NOT NULL,
    settled_at timestamptz NOT NULL
);
CREATE INDEX clock_outcomes_settled ON clock_outcomes (settled_at);

CREATE TABLE praises (
    praise_id uuid PRIMARY KEY,
    source text NOT NULL,
    letter_id text UNIQUE,
    property_id text NOT NULL,
    target_kind text NOT NULL,
    staff_id text,
    department text NOT NULL,
    channel text NOT NULL,
    summary text NOT NULL,
    received_at timestamptz NOT NULL,
    recorded_by text NOT NULL,
    recorded_at timestamptz NOT NULL,
    request_no text
);
CREATE INDEX praises_received ON praises (received_at);

-- A reply letter's current state, with the whole aggregate (versions, reviews, history) as a document.
CREATE TABLE letters (
    letter_id uuid PRIMARY KEY,
    request_no text NOT NULL,
    state text NOT NULL,
    doc jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX letters_request ON letters (request_no);

-- Every version of every letter, append-only.
CREATE TABLE letter_versions (
    letter_id uuid NOT NULL REFERENCES letters,
    version integer NOT NULL,
    body text NOT NULL,
    author text NOT NULL,
    template_id text,
    note text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    PRIMARY KEY (letter_id, version)
);

CREATE TABLE audits (
    audit_id uuid PRIMARY KEY,
    period text NOT NULL UNIQUE,
    supervisor_id text NOT NULL,
    started_at timestamptz NOT NULL,
    selection jsonb NOT NULL
);

CREATE TABLE audit_findings (
    audit_id uuid NOT NULL REFERENCES audits,
    visit_id uuid NOT NULL,
    request_no text NOT NULL,
    outcome text NOT NULL,
    notes text NOT NULL,
    supervisor_id text NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (audit_id, visit_id)
);

CREATE TABLE surveys (
    survey_id uuid PRIMARY KEY,
    property_id text NOT NULL,
    period text NOT NULL,
    state text NOT NULL,
    doc jsonb NOT NULL,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz
);

-- One row per published monthly report: the primary key makes the publication once-only.
CREATE TABLE monthly_reports (
    period text PRIMARY KEY,
    report_id uuid NOT NULL,
    published_at timestamptz NOT NULL,
    figures jsonb NOT NULL
)
