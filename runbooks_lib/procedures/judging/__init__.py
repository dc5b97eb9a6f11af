"""Judging versions: ``sequential`` (the one sequential verdict: Wald's SPRT on error counts and the
p99 on the same window, shared with the canary judge), ``judgement`` (a version's golden signals
judged by it, for a deploy's analysis and a rollback's verification), ``verdicts`` (what this
cluster already knows about a version: known good, known bad, and the evidence) and ``replay``
(``runbook judge replay``: recorded windows re-judged under other policies, against what
happened next)."""
