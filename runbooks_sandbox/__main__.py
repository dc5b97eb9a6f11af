"""``python -m runbooks_sandbox up|down|status|traffic|fault``: the same as ``runbook sandbox ...``."""
from .cli import sandbox

sandbox(prog_name="python -m runbooks_sandbox")
