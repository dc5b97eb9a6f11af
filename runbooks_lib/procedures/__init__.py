"""The procedures room: one entry per notebook, the guide's procedures as named steps.

``deploy`` (rolling and blue-green, with its automatic rollback), ``rollback``, ``rotation``
(secrets), ``health``, ``schema_change`` (a release's migrations), ``judging`` (a version judged
on its golden signals; what is known about versions), ``canary``, ``incident``, ``dr``,
``delivery`` (DORA metrics from the records) and ``gameday``. The top room: may import every room
below it; nothing below imports it.
"""
