-- Requests as registered by intake. Residents' name and phone live in `contacts` only, once.
CREATE TABLE properties (
    property_id text PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE requests (
    request_no text PRIMARY KEY,
    property_id text NOT NULL REFERENCES properties,
    building text,
    unit text,
    area text,
    channel text NOT NULL,
    source text NOT NULL,
    external_id text,
    category text NOT NULL,
    subcategory text,
    priority text NOT NULL,
    emergency boolean NOT NULL,
    confidence real NOT NULL,
    auto_classification jsonb NOT NULL,
    override_classification jsonb,
    complaint_valid boolean,
    status text NOT NULL,
    owner_agent text NOT NULL,
    reporter_kind text NOT NULL,
    description text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}',
    paid_service boolean NOT NULL DEFAULT false,
    vip boolean NOT NULL DEFAULT false,
    compensation_demanded boolean NOT NULL DEFAULT false,
    duplicate_of text,
    incident_id text,
    registered_at timestamptz NOT NULL,
    reported_at timestamptz,
    closed_at timestamptz,
    CONSTRAINT requests_idempotency UNIQUE (source, external_id)
);
CREATE INDEX requests_property_time ON requests (property_id, registered_at);
CREATE INDEX requests_registered_at ON requests (registered_at);
CREATE INDEX requests_unit_class ON requests (property_id, unit, category, registered_at);

CREATE TABLE contacts (
    request_no text PRIMARY KEY REFERENCES requests,
    name text,
    phone text
);
CREATE INDEX contacts_phone ON contacts (phone) WHERE phone IS NOT NULL;

-- Per property and local day, the last number issued. Taken in its own short transaction (see
-- adapters/repository.py next_seq) so that concurrent registrations do not queue behind one row lock.
CREATE TABLE request_numbers (
    property_id text NOT NULL,
    local_day date NOT NULL,
    last_seq integer NOT NULL,
    PRIMARY KEY (property_id, local_day)
);

INSERT INTO properties (property_id, name) VALUES ('LY', '荔园'), ('HY', '海悦'), ('JH', '锦华');
