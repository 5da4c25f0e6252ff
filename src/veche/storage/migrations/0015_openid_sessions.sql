-- OpenID tokens end with the session (device) that asked for them: logging out, deleting
-- the device or deactivating the account deletes them. Older rows (NULL) just expire.
-- depends: 0014_moderation

ALTER TABLE openid_tokens ADD COLUMN device_id TEXT;
CREATE INDEX openid_tokens_device ON openid_tokens (user_id, device_id);
