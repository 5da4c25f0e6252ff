-- Account moderation by server admins: locked accounts can do nothing but log out; suspended
-- ones can read, leave and tidy up, but not join, invite, send or change their profile.
-- depends: 0013_dehydrated_devices

ALTER TABLE users ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
