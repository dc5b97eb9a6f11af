"""The platform room: one module per system the runbooks talk to, each translating its client's errors.

Kubernetes (``kube``: the API by path; ``cluster``: the named operations; ``rollout``; ``images``;
``checks``: pods, smoke requests), Vault (``vault``), PostgreSQL (``database``, ``migrations``),
Prometheus (``metrics``, ``signals``), Redis (``redis``), the load generator's report
(``load_report``), webhooks (``notify``) and traffic routers (``routing``). A client library's
exception never leaves this room: it becomes a ``RunbookError`` (errors.py), raised ``from`` it.
Imports only ``records``, ``config``, ``errors`` and ``display`` below it.
"""
