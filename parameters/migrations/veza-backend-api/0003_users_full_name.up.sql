-- kind: contract
-- expects: column users.full_name
-- expects: no column users.display_name
-- v1.8.0 renames users.display_name to full_name. Versions before it select display_name and
-- cannot run against the result: rolling back below v1.8.0 needs the down migration first.
ALTER TABLE users RENAME COLUMN display_name TO full_name;
