-- The whole Request aggregate, units, letters (来函) and incidents.

-- A property's unit list. A property with no rows here accepts any unit of the right format.
CREATE TABLE units (
    property_id text NOT NULL REFERENCES properties,
    unit text NOT NULL,
    building text NOT NULL,
    PRIMARY KEY (property_id, unit)
);
-- 荔园: buildings 1-6, floors 1-33, four flats a floor, numbered <building>-<floor><flat> (3-1502).
INSERT INTO units (property_id, unit, building)
SELECT 'LY', b || '-' || f || lpad(r::text, 2, '0'), b::text
FROM generate_series(1, 6) b, generate_series(1, 33) f, generate_series(1, 4) r;
-- 海悦: buildings 1-4, floors 1-18, the floor zero-padded (1-0101).
INSERT INTO units (property_id, unit, building)
SELECT 'HY', b || '-' || lpad(f::text, 2, '0') || lpad(r::text, 2, '0'), b::text
FROM generate_series(1, 4) b, generate_series(1, 18) f, generate_series(1, 4) r;
-- 锦华 (JH) keeps no unit list yet.

ALTER TABLE requests
    ADD COLUMN request_id uuid,
    ADD COLUMN registered_by text,
    ADD COLUMN acknowledgement_required boolean NOT NULL DEFAULT false,
    ADD COLUMN acknowledgements jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN promised_at timestamptz,
    ADD COLUMN handovers jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN reclassified_by text,
    ADD COLUMN reclassify_reason text,
    ADD COLUMN answer text,
    ADD COLUMN referred_at timestamptz,
    ADD COLUMN duplicate_reason text,
    ADD COLUMN closed_by text,
    ADD COLUMN closed_reason text,
    ADD COLUMN cancel_reason text,
    ADD COLUMN letter_id uuid;

-- Clusters: same property and subclass within a window (then building/area compared on the few rows found).
CREATE INDEX requests_cluster ON requests (property_id, subcategory, registered_at) WHERE subcategory IS NOT NULL;
CREATE INDEX requests_incident ON requests (incident_id) WHERE incident_id IS NOT NULL;

-- The phone used to find a repeat caller: the reporter's, else the call centre's caller number. Both are
-- stored here only (requests.details keeps the caller number masked).
ALTER TABLE contacts
    ADD COLUMN caller_number text,
    ADD COLUMN property_id text,
    ADD COLUMN registered_at timestamptz,
    ADD COLUMN contact_phone text GENERATED ALWAYS AS (coalesce(phone, caller_number)) STORED;
CREATE INDEX contacts_caller ON contacts (property_id, contact_phone, registered_at) WHERE contact_phone IS NOT NULL;

CREATE TABLE incidents (
    incident_id uuid PRIMARY KEY,
    property_id text NOT NULL,
    category text NOT NULL,
    subcategory text NOT NULL,
    building text,
    area text,
    first_reported_at timestamptz NOT NULL,
    request_nos text[] NOT NULL,
    children_count integer NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE letters (
    letter_id uuid PRIMARY KEY,
    property_id text NOT NULL REFERENCES properties,
    kind text NOT NULL,
    routed_to text NOT NULL,
    status text NOT NULL,
    received_date date NOT NULL,
    subject text NOT NULL,
    sender_name text,
    sender_phone text,
    reporter_kind text NOT NULL DEFAULT 'resident',
    building text,
    unit text,
    area text,
    description text,
    praised_staff_id text,
    praised_department text,
    request_no text,
    logged_by text NOT NULL,
    logged_at timestamptz NOT NULL,
    decided_by text,
    decision_reason text,
    decided_at timestamptz
);
CREATE INDEX letters_queue ON letters (routed_to, status, logged_at);
