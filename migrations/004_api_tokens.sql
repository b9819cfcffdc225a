-- API keys (stored only as a digest, shown once at creation) and refresh-token sessions for JWT login.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (name <> ''),
    key_digest   text NOT NULL UNIQUE,
    key_prefix   text,
    scopes       text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'ingest', 'write', 'control', 'admin']),
    created_by   bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz
);

-- Refresh tokens rotate: each refresh revokes the presented token and issues a new one in the same
-- family; logout revokes the family. A token is looked up by its digest only.
CREATE TABLE auth_sessions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id    uuid NOT NULL,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_digest text NOT NULL UNIQUE,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    replaced_by  uuid REFERENCES auth_sessions (id) ON DELETE SET NULL,
    client_ip    inet,
    user_agent   text
);

CREATE INDEX auth_sessions_family_idx ON auth_sessions (family_id);
CREATE INDEX auth_sessions_user_idx ON auth_sessions (user_id);
CREATE INDEX auth_sessions_expires_idx ON auth_sessions (expires_at);
