"""Pure parts of the drill: row-count comparison, failover gap, judged measurements, parameters."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from runbooks_lib.procedures.dr.drill import DrillParams, Measurement
from runbooks_lib.procedures.dr.heartbeat import Beat, failover_gap
from runbooks_lib.procedures.dr.restore import _check_counts

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def test_row_counts_equal_pass_and_name_the_totals() -> None:
    check = _check_counts({"users": 200, "tracks": 300}, {"users": 200, "tracks": 300})
    assert check.passed and "2 tables, 500 rows" in check.detail


def test_row_counts_name_every_table_that_differs_and_extra_tables() -> None:
    check = _check_counts({"users": 199, "tracks": 300, "stray": 1}, {"users": 200, "tracks": 300, "playlists": 60})
    assert not check.passed
    assert "users: 199 restored, 200 at backup" in check.detail
    assert "playlists: None restored, 60 at backup" in check.detail
    assert "stray" in check.detail


def beats(node: str, start: float, count: int, step: float = 0.2, seq0: int = 1) -> list[Beat]:
    return [Beat(seq0 + i, T0 + timedelta(seconds=start + i * step), node) for i in range(count)]


def test_failover_gap_is_last_write_on_the_old_node_to_first_on_another() -> None:
    old = beats("127.0.0.1:5432", 0, 10)  # up to 1.8 s
    new = beats("127.0.0.1:5433", 4.0, 5, seq0=11)
    last_old, first_new = failover_gap(old + new, fault_at=T0 + timedelta(seconds=1.9))
    assert last_old == old[-1] and first_new == new[0]
    assert (first_new.at - last_old.at).total_seconds() == pytest.approx(2.2)


def test_no_write_on_a_new_node_yet_means_no_gap() -> None:
    old = beats("a:1", 0, 5)
    assert failover_gap(old, T0 + timedelta(seconds=5))[1] is None
    assert failover_gap([], T0) == (None, None)


def test_measurements_are_judged_only_against_a_target() -> None:
    assert Measurement("rpo", 3.0, 3600, "s").passed is True
    assert Measurement("rpo", 4000, 3600, "s").passed is False
    assert Measurement("rpo", None, 3600, "s").passed is False  # a target with nothing measured fails
    assert Measurement("detection", 0.1, None, "s").passed is None


def test_drill_parameters_refuse_unknown_scenarios_and_fields() -> None:
    assert DrillParams(scenario="restore").scenario == "restore"
    assert DrillParams(scenario="region").scenario == "region"
    with pytest.raises(ValidationError, match="restore"):
        DrillParams(scenario="zone")
    with pytest.raises(ValidationError):
        DrillParams(scenario="full", rpo_target_s=-1)
    with pytest.raises(ValidationError):
        DrillParams(scenaro="full")


def test_an_object_kept_off_site_carries_nothing_the_api_server_set() -> None:
    from runbooks_lib.procedures.dr.region import portable

    service = {"apiVersion": "v1", "kind": "Service", "status": {"loadBalancer": {}},
               "metadata": {"name": "veza-frontend", "namespace": "veza-sandbox", "uid": "u-1", "resourceVersion": "42",
                            "creationTimestamp": "2026-12-01T00:00:00Z", "labels": {"app": "veza-frontend"},
                            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "web"}},
               "spec": {"clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"], "selector": {"app": "veza-frontend"},
                        "ports": [{"port": 80}]}}
    kept = portable(service)
    assert kept["metadata"] == {"name": "veza-frontend", "labels": {"app": "veza-frontend"}, "annotations": {"team": "web"}}
    assert kept["spec"] == {"selector": {"app": "veza-frontend"}, "ports": [{"port": 80}]}
    assert "status" not in kept and service["spec"]["clusterIP"] == "10.96.0.7", "the live object is not changed"
    deployment = portable({"kind": "Deployment", "metadata": {"name": "d", "generation": 3,
                                                              "annotations": {"deployment.kubernetes.io/revision": "7"}},
                           "spec": {"replicas": 3}})
    assert deployment == {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 3}}


def test_a_recovered_server_listens_on_backups_restore_port_and_a_taken_one_stops_the_recovery_at_once(
        tmp_path) -> None:
    """The region's network reaches the recovered database at ``backups.restore_port`` only: a port
    someone else holds fails the recovery, naming it, before anything is unpacked; unset, any free port."""
    import socket

    from runbooks_lib.config.profiles import BackupSettings
    from runbooks_lib.errors import CheckFailed
    from runbooks_lib.procedures.dr.pitr import BaseBackup, _listen_port, recover_to_time

    restore_dir = tmp_path / "restored"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        settings = BackupSettings(restore_dir=str(restore_dir), restore_port=taken)
        base = BaseBackup(tmp_path / "base-x.tar.enc", "vault:v1:key", T0, "0/2000028", 0)
        with pytest.raises(CheckFailed, match=rf"backups.restore_port {taken} is taken on 127.0.0.1"):
            recover_to_time(base, None, None, settings, wal_dir=tmp_path)  # no Vault: it is never asked
    assert not restore_dir.exists() or not any(restore_dir.iterdir()), "nothing unpacked: the server could not listen"
    assert _listen_port(settings) == taken, "once free, that port and no other"
    assert 0 < _listen_port(BackupSettings()) < 65536


def test_what_the_cluster_makes_in_every_namespace_is_not_kept_off_site() -> None:
    """The controller manager publishes its own CA in kube-root-ca.crt in every namespace: the DR
    cluster has its own (creating the primary's there is a 409), a Veza ConfigMap is kept."""
    from runbooks_lib.procedures.dr.region import made_by_the_cluster

    assert made_by_the_cluster({"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}})
    assert not made_by_the_cluster({"kind": "ConfigMap", "metadata": {"name": "veza-config"}})
    assert not made_by_the_cluster({"kind": "Service", "metadata": {"name": "kube-root-ca.crt"}})
