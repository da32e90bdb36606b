-- API keys of client systems and desks: only a SHA-256 of the secret is kept.
CREATE TABLE api_keys (
    key_id text PRIMARY KEY,
    client text NOT NULL,
    secret_sha256 bytea NOT NULL,
    scopes text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
