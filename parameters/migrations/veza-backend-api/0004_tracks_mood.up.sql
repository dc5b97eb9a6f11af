-- kind: expand
-- expects: column tracks.mood
-- v1.8.1-badmigration: fills the new column from a table that exists only on the developer's
-- laptop. The UPDATE fails, and the ALTER before it is rolled back with it.
ALTER TABLE tracks ADD COLUMN mood text;
UPDATE tracks SET mood = g.mood FROM genre_moods AS g WHERE g.genre = tracks.genre;
