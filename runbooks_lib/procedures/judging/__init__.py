"""Judging versions: ``judgement`` (a version's golden signals against the SLOs, for a deploy's
analysis and a rollback's verification) and ``verdicts`` (what this cluster already knows about a
version: known good, known bad, and the evidence)."""
