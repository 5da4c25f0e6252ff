-- OpenID tokens (/openid/request_token): only their SHA-256 is kept, like access tokens'.
-- depends: 0011_pushers

CREATE TABLE openid_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
