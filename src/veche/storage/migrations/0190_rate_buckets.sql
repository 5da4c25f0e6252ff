-- Rate-limit buckets that every process of a cluster shares (ratelimit.SHARED: logins and
-- registrations, which a load balancer spreads over the processes). One process keeps the
-- others in memory.
-- depends: 0180_txn_id_endpoint

CREATE TABLE rate_buckets (
    action TEXT NOT NULL,
    bucket_key TEXT NOT NULL,
    tokens DOUBLE PRECISION NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (action, bucket_key)
);
CREATE INDEX rate_buckets_updated ON rate_buckets (updated_ms);
