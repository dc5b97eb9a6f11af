"""veza_db's schema and seed data for the sandbox: a small, realistic slice of Veza.

The schema is migration 1 (the baseline) of ``schema_migrations``; later ones ship with the
backend's releases (parameters/migrations/veza-backend-api/).

Users (some of them artists), their tracks, playlists and the tracks in them — a few
hundred rows generated in SQL, in one round trip, with a fixed seed so that every sandbox
starts with the same data (row counts are what backup and failover drills compare).
"""
from __future__ import annotations

__all__ = ["SEED_SQL", "SEED_COUNTS"]

#: Rows per table after seeding (tests and drills compare against these).
SEED_COUNTS = {"users": 200, "tracks": 300, "playlists": 60, "playlist_tracks": 480}

SEED_SQL = """
CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    username      text NOT NULL UNIQUE,
    display_name  text NOT NULL,
    is_artist     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tracks (
    id            bigserial PRIMARY KEY,
    artist_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title         text NOT NULL,
    genre         text NOT NULL,
    duration_s    integer NOT NULL CHECK (duration_s > 0),
    play_count    bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracks_artist_id_idx ON tracks (artist_id);

CREATE TABLE playlists (
    id            bigserial PRIMARY KEY,
    owner_id      bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          text NOT NULL,
    is_public     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE playlist_tracks (
    playlist_id   bigint NOT NULL REFERENCES playlists(id) ON DELETE CASCADE,
    track_id      bigint NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    position      integer NOT NULL,
    added_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (playlist_id, track_id)
);
CREATE INDEX playlist_tracks_track_id_idx ON playlist_tracks (track_id);

-- As migration tools keep it (golang-migrate's table, with what the runbooks record beside it):
-- the seed above is the baseline, migration 1; runbooks_lib.platform.migrations applies the rest.
CREATE TABLE schema_migrations (
    version       bigint PRIMARY KEY,
    name          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('expand', 'contract')),
    checksum      text,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    applied_by    text,
    backup        text
);
INSERT INTO schema_migrations (version, name, kind, applied_by) VALUES (1, 'baseline', 'expand', 'sandbox seed');

SELECT setseed(0.42);

INSERT INTO users (email, username, display_name, is_artist, created_at)
SELECT format('user%s@veza.test', n), format('user%s', n),
       initcap((ARRAY['ada','bo','cleo','dev','eli','fay','gus','hana','ivo','juno'])[1 + n % 10])
           || ' ' || chr(65 + n % 26) || '.',
       n % 4 = 0,
       now() - make_interval(days => (random() * 700)::int)
FROM generate_series(1, 200) AS n;

INSERT INTO tracks (artist_id, title, genre, duration_s, play_count, created_at)
SELECT 4 * (1 + n % 50),
       format('Track %s', n),
       (ARRAY['electronic','jazz','hip-hop','ambient','rock','folk'])[1 + n % 6],
       90 + (random() * 300)::int,
       (random() * 100000)::bigint,
       now() - make_interval(days => (random() * 365)::int)
FROM generate_series(1, 300) AS n;

INSERT INTO playlists (owner_id, name, is_public)
SELECT 1 + (n * 7) % 200, format('Playlist %s', n), n % 5 <> 0
FROM generate_series(1, 60) AS n;

INSERT INTO playlist_tracks (playlist_id, track_id, position)
SELECT p, 1 + (p * 37 + k * 11) % 300, k
FROM generate_series(1, 60) AS p, generate_series(1, 8) AS k;

ANALYZE;
"""
