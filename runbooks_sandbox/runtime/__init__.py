"""What makes the sandbox's pods and Services real: processes, probes, proxy, load.

Modules are imported directly (``runbooks_sandbox.runtime.load``...), so each stays cheap to
import on its own.
"""
