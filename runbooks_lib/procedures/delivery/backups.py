"""The delivery metrics' backups group: are the backups we keep known to be good?

Three figures: the fraction of stored backups a drill restored and proved (a valid signed stamp
in the store, :mod:`..dr.proof`), the age of the newest proof against the guide's monthly
restore test, and each drill's restore seconds in time order (from the drill records' figure
``restore_s``). The first two need the backup store and Vault (which vouches for manifests and
stamps); when either cannot be read the figures are unknown, and the table says why: a report
is not a check, so this never fails the run.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

from ...errors import RunbookError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ...config.profiles import Profile
    from ..dr.inventory import BackupEntry
    from .events import DrillEvent

__all__ = ["BackupProofs", "proofs_of", "read_backup_proofs", "backups_table", "plot_backups", "MONTH_S"]

MONTH_S = 31 * 86400.0  # the guide's 10: restores tested monthly


@dataclass(frozen=True)
class BackupProofs:
    """What the store says about its backups' proofs (None everywhere when it could not be read)."""

    stored: int | None
    proven: int | None
    newest_proof_at: datetime | None
    newest_proof_run: str | None
    interval_s: float = MONTH_S
    unknown: str = ""  # why the store could not be read

    @property
    def proven_fraction(self) -> float | None:
        return None if not self.stored or self.proven is None else round(self.proven / self.stored, 4)

    def newest_proof_age_s(self, now: datetime) -> float | None:
        return None if self.newest_proof_at is None else round((now - self.newest_proof_at).total_seconds(), 1)


def proofs_of(entries: "Sequence[BackupEntry]", interval_s: float = MONTH_S) -> BackupProofs:
    """The figures of an inventory (:func:`..dr.inventory.backup_inventory`)."""
    proven = [e for e in entries if e.proven and e.proof.stamp is not None]
    newest = max(proven, key=lambda e: e.proof.stamp.proven, default=None)  # type: ignore[union-attr]
    stamp = newest.proof.stamp if newest is not None else None
    return BackupProofs(len(entries), len(proven), stamp.proven if stamp else None, stamp.run_id if stamp else None,
                        interval_s)


def read_backup_proofs(profile: "Profile | None") -> BackupProofs:
    """The profile's backup store, read with its Vault; unknown (saying why) when it cannot be."""
    from ..dr.inventory import inventory_of_profile

    if profile is None:
        return BackupProofs(None, None, None, None, unknown="no profile")
    interval_s = profile.backups.restore_test_interval_days * 86400
    try:
        return proofs_of(inventory_of_profile(profile), interval_s)
    except RunbookError as e:
        return BackupProofs(None, None, None, None, interval_s, unknown=str(e))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"{seconds / 86400:.1f} d" if seconds >= 86400 else f"{seconds / 3600:.1f} h"


def backups_table(proofs: BackupProofs, drills: "Sequence[DrillEvent]", now: datetime) -> "pd.DataFrame":
    """The group's figures, then each drill's restore seconds and the change from the drill before."""
    import pandas as pd

    age = proofs.newest_proof_age_s(now)
    fraction = proofs.proven_fraction
    rows = [{"figure": "backups proven by a restore",
             "value": "unknown" if proofs.proven is None else f"{proofs.proven} of {proofs.stored}"
             + (f" ({100 * fraction:.0f} %)" if fraction is not None else ""),
             "target": "", "meets target": "", "detail": proofs.unknown},
            {"figure": "age of the newest proof", "value": _age(age), "target": f"≤ {_age(proofs.interval_s)}",
             "meets target": "unknown" if age is None else ("yes" if age <= proofs.interval_s else "NO"),
             "detail": f"run {proofs.newest_proof_run}" if proofs.newest_proof_run else proofs.unknown or "never proven"}]
    previous: dict[str, float] = {}
    for d in drills:
        if d.restore_s is None:
            continue
        before = previous.get(d.env)
        rows.append({"figure": f"restore, drill of {d.started:%Y-%m-%d %H:%M} ({d.env})", "value": f"{d.restore_s:.1f} s",
                     "target": "", "meets target": "",
                     "detail": "" if before is None else f"{d.restore_s - before:+.1f} s vs the drill before"})
        previous[d.env] = d.restore_s
    frame = pd.DataFrame(rows).set_index("figure")
    frame.attrs["title"] = "Backups: proven by restores (guide: restore tested monthly), restore seconds drill by drill"
    return frame


def plot_backups(drills: "Sequence[DrillEvent]") -> "Figure":
    """Restore seconds drill by drill, per environment: the trend a growing database shows first."""
    from .plots import _done, _figure, _nothing

    fig, axes = _figure(1)
    ax = axes[0]
    series: dict[str, list[tuple[Any, float]]] = {}
    for d in drills:
        if d.restore_s is not None:
            series.setdefault(d.env, []).append((d.started, d.restore_s))
    if not series:
        _nothing(ax, "drills with a restore")
    for env, points in sorted(series.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=env)
    ax.set_ylabel("seconds")
    ax.set_title("Restore seconds, drill by drill")
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    if series:
        ax.legend(fontsize=7, loc="upper left")
    return _done(fig)
