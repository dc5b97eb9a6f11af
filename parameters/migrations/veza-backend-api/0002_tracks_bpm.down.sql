DROP INDEX tracks_bpm_idx;
ALTER TABLE tracks DROP COLUMN bpm;
