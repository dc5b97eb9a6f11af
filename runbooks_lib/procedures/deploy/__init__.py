"""The deploy runbook: a release rolled out (``release``), or beside the live one (``bluegreen``),
by the strategy the parameters name (``strategies``), with its automatic rollback."""
