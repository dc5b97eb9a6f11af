"""Disaster recovery: backups that are proven by restores, heartbeat-measured RPO, failover.

Small modules, procedures on top: :mod:`.envelope` (AES-256-GCM segments), :mod:`.store`
(backups by URL, fsspec), :mod:`.backups` (pg_dump, encrypted on the fly), :mod:`.restore`
(restore into a scratch database and check), :mod:`.retention` (the guide's policy),
:mod:`.heartbeat` (RPO and lost rows), :mod:`.failover` (promote, repoint, rebuild),
:mod:`.pitr` (base backup + archived WAL to a chosen time), :mod:`.drill` (what the notebook
calls).
"""
