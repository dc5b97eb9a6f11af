"""The run room: what every runbook run shares, whatever it does.

``context`` (``start()`` and the RunContext a notebook holds: steps, figures, verdicts, the
record's summary), ``runner`` and ``kernel`` (``runbook run``: papermill, the kernel, the seal),
``journal``, ``replay`` and ``resume`` (a run continued after approval or failure), ``gates`` and
``approvals`` (four eyes), ``cluster_identity`` (the guard against the wrong cluster), ``lock``
(the deploy Lease), ``liveness`` and ``dead_runs`` (a killed run is sealed), ``schedule``
(CronJobs). Imports ``platform`` and the rooms below it, never a procedure.
"""
