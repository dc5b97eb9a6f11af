-- kind: expand
-- expects: column tracks.bpm
-- expects: index tracks_bpm_idx
-- v1.7.0 shows each track's tempo. The column is nullable, so older versions, which neither
-- read nor write it, run unchanged against the new schema.
ALTER TABLE tracks ADD COLUMN bpm integer CHECK (bpm BETWEEN 20 AND 400);
CREATE INDEX tracks_bpm_idx ON tracks (bpm);
