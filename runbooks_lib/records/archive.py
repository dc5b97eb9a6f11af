"""A team archive of records at a URL (``s3://bucket/veza-records``), through fsspec.

Records are always written, sealed and chained locally first — in the spool folder
``outputs/`` — so a run never depends on the network to keep its record. When the profile's
``records.url`` (or ``RUNBOOKS_RECORDS_URL``) names a remote filesystem, each sealed record, its
HTML export and the ledger are then published there. ``pull`` mirrors an archive into a
folder, where ``runbook records list|verify --root`` read it like any other.

Several machines publish to one archive, so each publishes its ledger as its own file,
``ledgers/<writer>.jsonl`` (``records.trust.writer_id``), with its head beside it,
``ledgers/<writer>.head.json`` (an anchor off the machine): no machine ever overwrites
another's chain. One file per writer rather than one shared file appended with a
compare-and-swap: fsspec's backends have no common conditional write (S3's, GCS's and an FTP
server's differ, a local folder has none), a writer's chain stays linear and checkable alone,
and record names never collide (each holds its run id).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from ..errors import BackendUnavailable, RunbookError
from .ledger import attachments_of

__all__ = ["is_remote", "archive_url", "publish", "publish_ledger", "pull"]

LEDGER_NAME = "ledger.jsonl"
LEDGERS = "ledgers"  # in an archive: one ledger per writer


def is_remote(url: str | None) -> bool:
    """Whether ``url`` names a filesystem other than this machine's (s3://, gs://, memory://...)."""
    return bool(url) and "://" in str(url) and not str(url).startswith("file://")


def archive_url(env: str | None = None) -> str | None:
    """The remote archive the records of ``env`` are published to, or None when they stay local."""
    url = os.environ.get("RUNBOOKS_RECORDS_URL")
    if not url and env:
        from ..config.profiles import load_profile

        url = load_profile(env).records.url
    return url if is_remote(url) else None


def _filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    import fsspec

    try:
        fs, base = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ImportError, ValueError) as e:
        raise RunbookError(f"records archive {url}: {e} (for s3:// install s3fs: pip install s3fs)") from e
    except Exception as e:  # some filesystems (ftp, sftp) connect as soon as they are made
        raise BackendUnavailable(f"records archive {url} unreachable ({type(e).__name__}); "
                                 "the record is sealed locally: `runbook records publish` retries") from e
    return fs, base.rstrip("/")


def _put(fs: Any, local: Path, remote: str) -> None:
    fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
    fs.put_file(str(local), remote)


def publish(root: Path, url: str, paths: Iterable[Path], storage_options: dict[str, Any] | None = None) -> list[str]:
    """Copy records (and their HTML exports) under ``root`` to the archive, then the ledger."""
    fs, base = _filesystem(url, storage_options)
    done = []
    try:
        for path in paths:
            for file in (path, path.with_suffix(".html"), *attachments_of(path)):
                if file.is_file():
                    remote = f"{base}/{file.relative_to(root).as_posix()}"
                    _put(fs, file, remote)
                    done.append(remote)
        done += publish_ledger(root, url, storage_options, fs=fs)
    except Exception as e:  # each fsspec backend has its own errors (botocore's are not OSErrors)
        raise BackendUnavailable(f"records archive {url} unreachable ({type(e).__name__}); "
                                 "the record is sealed locally: `runbook records publish` retries") from e
    return done


def publish_ledger(root: Path, url: str, storage_options: dict[str, Any] | None = None, *, fs: Any = None) -> list[str]:
    """Publish every sealed record the archive lacks, then the ledger (last, so it never names
    a record the archive does not have yet)."""
    from .ledger import Ledger

    if fs is None:
        fs, base = _filesystem(url, storage_options)
    else:
        base = _filesystem(url, storage_options)[1]
    done = []
    for entry in Ledger(root).entries():
        if "record" not in entry:
            continue
        record = root / entry["record"]
        for file in (record, record.with_suffix(".html"), *(root / a for a in entry.get("attachments") or {})):
            remote = f"{base}/{file.relative_to(root).as_posix()}"
            if file.is_file() and not fs.exists(remote):
                _put(fs, file, remote)
                done.append(remote)
    ledger = root / LEDGER_NAME
    if ledger.is_file():
        from .trust import ArchiveAnchor, writer_id

        # This machine's chain under its own name, then its head: an anchor off the machine.
        writer = writer_id()
        _put(fs, ledger, f"{base}/{LEDGERS}/{writer}.jsonl")
        done.append(f"{base}/{LEDGERS}/{writer}.jsonl")
        last = [e for e in Ledger(root).entries() if "_raw" not in e]
        if last:
            ArchiveAnchor(url, storage_options).write(Ledger(root).head_of({**last[-1], "writer": writer}))
            done.append(f"{base}/{LEDGERS}/{writer}.head.json")
    return done


def pull(url: str, to: Path, storage_options: dict[str, Any] | None = None) -> int:
    """Mirror the archive at ``url`` into the folder ``to``; returns the number of files."""
    fs, base = _filesystem(url, storage_options)
    to.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        for remote in fs.find(base):
            local = to / remote[len(base):].lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(local))
            count += 1
    except Exception as e:  # each fsspec backend has its own errors (botocore's are not OSErrors)
        raise BackendUnavailable(f"records archive {url} unreachable ({type(e).__name__})") from e
    return count
