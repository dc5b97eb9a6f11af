"""Real OpenBao (Vault transit) and PostgreSQL 15 for the backup and WAL findings' tests."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest


@dataclass
class Backing:
    """The servers a backup or a WAL archive needs, and the library's view of them."""

    state: Path
    openbao: Any
    postgres: Any
    vault: Any  # runbooks_lib.platform.vault.Vault
    settings: Any  # runbooks_lib.config.profiles.BackupSettings


def start_backing(archive_wal: bool) -> Backing:
    from pydantic import SecretStr

    from runbooks_lib.config.profiles import BackupSettings, VaultAuth, VaultSettings
    from runbooks_lib.platform.vault import Vault
    from runbooks_sandbox.servers import OpenBaoServer, PostgresCluster

    # Not pytest's tmp_path: its root is mode 0700, which user postgres cannot traverse.
    state = Path(tempfile.mkdtemp(prefix="veza-security-"))
    state.chmod(0o755)
    openbao = OpenBaoServer(state).start()
    try:
        openbao.seed(("sandbox",))
        if archive_wal:
            from runbooks_sandbox.servers.postgres import WalArchiver

            archiver = WalArchiver(openbao.address, openbao.wal_archiver_token("veza"))
            postgres = PostgresCluster(state, with_standby=False, wal_archiver=archiver).start()
        else:
            postgres = PostgresCluster(state, with_standby=False).start()
    except BaseException:
        openbao.stop()
        raise
    vault = Vault(VaultSettings(address=openbao.address, auth=VaultAuth(token=SecretStr(openbao.root_token or "")),
                                path="secret/veza/sandbox"))
    settings = BackupSettings(url=str(state / "offsite" / "backups"), wal_archive_url=str(postgres.wal_archive))
    return Backing(state, openbao, postgres, vault, settings)


def stop_backing(backing: Backing) -> None:
    from runbooks_sandbox.servers.datadir import remove_server_data_dir

    backing.postgres.stop()
    backing.openbao.stop()
    remove_server_data_dir(backing.state)  # as root the base backups land there, outside the state dir
    shutil.rmtree(backing.state, ignore_errors=True)


@pytest.fixture(scope="module")
def backing() -> Iterator[Backing]:
    """OpenBao with the transit key, and a PostgreSQL primary holding the seeded veza_db."""
    started = start_backing(archive_wal=False)
    yield started
    stop_backing(started)
