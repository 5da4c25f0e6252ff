-- Dehydrated devices (MSC3814): at most one per user, a device with keys and an inbox but no
-- access token; device_data is the client's encrypted pickle, opaque to the server.
-- depends: 0012_openid

CREATE TABLE dehydrated_devices (
    user_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    device_data_json TEXT NOT NULL
);
