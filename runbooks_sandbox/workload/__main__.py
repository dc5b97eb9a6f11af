"""``python -m runbooks_sandbox.workload --image IMAGE --host IP --port PORT [--fault-file PATH]``."""
from .app import main

raise SystemExit(main())
