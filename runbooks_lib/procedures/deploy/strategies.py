"""The rollout, by the strategy the deploy names: rolling (deploy.py) or blue-green (bluegreen.py).

Each strategy runs its own sub-steps as steps of the record, so a record shows only what ran: a
rolling deploy has no blue-green steps and the other way round. This module sits above both so
that neither strategy module needs the other.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .release import DeployRun

__all__ = ["roll_out_and_verify"]


def roll_out_and_verify(deploy: "DeployRun") -> None:
    """Roll the new version out with the deploy's strategy, checks and automatic undo included."""
    if deploy.params.strategy == "blue-green":
        from .bluegreen import BlueGreen

        BlueGreen(deploy).run()
    else:
        deploy.rolling_update()
