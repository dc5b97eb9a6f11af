"""The registry of secret values, and the functions that mask them in any text or output.

Everything ``runbooks_lib`` reads from Vault or a Kubernetes Secret is registered here
(``register_secret``), as are parameters with a secret-looking name (a webhook URL given as
``notify`` among them) and every ``SecretStr`` of the run's profile (``register_profile_secrets``).
``redact`` replaces every registered value and every common token shape (Vault tokens, AWS keys,
JWTs, Stripe keys, private keys, passwords in DSNs) with ``********``.

A secret is printed transformed as often as plain, so each registered value is masked in every
form it commonly takes (``_variants``): JSON-, repr-, HTML-escaped, URL-encoded, base64 (of the
value, and of anything it ends or starts, such as ``user:value`` in an HTTP Basic header: a base64
run that encodes the value is masked whole), and libpq-quoted as in a conninfo ``password=...``.
A DSN also registers its password alone (as written in the URL, and decoded), in each of those
forms; so does a conninfo string's ``password=``.

Other processes need to know what was registered without being told the values: the seal
of a record runs in ``runbook run`` or ``runbook records seal``, not in the kernel. So each
registered value also leaves a keyed fingerprint (BLAKE2b with a per-project salt, in a 0600
folder ``.fingerprints`` beside the records, ``outputs/.fingerprints`` by default); ``FingerprintFinder.find`` reports
where a window's fingerprint matches, without the clear value ever being written anywhere.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import secrets as _random
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from .secret import MASK, SecretValue

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SECRET_NAME_HINTS",
    "TOKEN_SHAPES",
    "FingerprintStore",
    "ShapeHit",
    "register_secret",
    "registered_count",
    "is_secret_name",
    "secret_parameter_values",
    "redact",
    "redact_object",
    "find_shapes",
    "strip_ansi",
    "forget_secrets",
    "on_register",
    "register_profile_secrets",
]

#: Values shorter than this are not masked in output (masking "abc" everywhere would garble
#: every record); the seal still refuses secret-named parameters given in clear.
MIN_SECRET_LENGTH = 4

#: A parameter whose name contains one of these is a secret, whatever its value looks like.
SECRET_NAME_HINTS = (
    "password", "passwd", "secret", "token", "api_key", "apikey", "credential", "private_key", "dsn",
    # A webhook URL holds its token in its path (the incident's ``notify`` parameter takes one).
    "webhook", "notify",
)

#: The words a secret-named parameter takes *instead of* a secret (``notify="none"``: nobody is
#: told). Registered as a secret, "none" was then found in every record's parameters cell and
#: comments ("none | rollback | scale"), and the seal refused the record.
PARAMETER_KEYWORDS = frozenset({"none"})

# Common token shapes, named for the seal's message. The regexes match the secret part only
# where a prefix helps the reader ("postgresql://veza:********@db" keeps user and host).
TOKEN_SHAPES: dict[str, re.Pattern[str]] = {
    "Vault service token": re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}"),
    "Vault legacy token": re.compile(r"(?<![A-Za-z0-9_.])[sbr]\.[A-Za-z0-9]{24}(?![A-Za-z0-9])"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16}\b"),
    "AWS secret access key": re.compile(
        r"(?i)(?<=aws_secret_access_key)(?:[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
    ),
    "JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    "Stripe key": re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
    "private key": re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?", re.S
    ),
    "password in a URL": re.compile(
        r"(?<=://)[^\s:/@'\"<>]+:(?!\*{3,}@)(?!\$\{)([^\s@/'\"<>]{1,256})(?=@[^\s/@'\"<>]+)"
    ),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
}

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None
_base64_pattern: re.Pattern[str] | None = None  # the base64 cores of registered values (``_base64_cores``)
_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")
# A shorter core could turn up in unrelated base64 by chance; the whole encodings are kept anyway.
MIN_BASE64_CORE = 8
_listeners: list[Callable[[], Any]] = []


def on_register(listener: Callable[[], Any]) -> None:
    """Call ``listener()`` after each registration (the kernel's filters turn themselves on)."""
    if listener not in _listeners:
        _listeners.append(listener)


def strip_ansi(text: str) -> str:
    """Text without terminal colour codes (tracebacks are coloured)."""
    return _ANSI.sub("", text)


def is_secret_name(name: str) -> bool:
    """True for a parameter or key name that says it holds a secret."""
    lowered = name.lower()
    return any(hint in lowered for hint in SECRET_NAME_HINTS)


def secret_parameter_values(parameters: Mapping[str, Any]) -> list[str]:
    """The values of a run's secret-named parameters that are secrets (not a keyword such as
    ``notify="none"``): what the runner and the kernel register before anything prints."""
    return [value for name, value in parameters.items()
            if is_secret_name(name) and isinstance(value, str) and value.strip().lower() not in PARAMETER_KEYWORDS]


def _escaped_forms(value: str) -> set[str]:
    """The forms a value takes once printed, repr'd, JSON-encoded, HTML-escaped, URL-encoded or
    libpq-quoted (``password='it\\'s'`` in a conninfo string)."""
    forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1], html.escape(value), html.escape(value, quote=False)}
    forms.add(json.dumps(html.escape(value))[1:-1])
    for quoted in (urllib.parse.quote(value, safe=""), urllib.parse.quote(value), urllib.parse.quote_plus(value)):
        forms.update({quoted, re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted)})
    forms.add(re.sub(r"([\\'])", r"\\\1", value))
    return forms


def _base64_forms(value: str) -> set[str]:
    """The value base64-encoded whole (standard and URL-safe alphabets, with and without padding)."""
    raw = value.encode("utf-8", "surrogatepass")
    forms = set()
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms.update({encoded, encoded.rstrip("=")})
    return forms


def _base64_cores(value: str) -> set[str]:
    """What the base64 of any text holding ``value`` holds wherever the value falls in it: for each of
    the three alignments, the characters that encode the value's bytes alone (``user:value`` in an
    HTTP Basic header, a token inside an encoded JSON body)."""
    raw = value.encode("utf-8", "surrogatepass")
    cores = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        first = (0, 2, 3)[shift]  # characters before it mix the preceding bytes' bits in
        last = (8 * (shift + len(raw))) // 6  # characters after it mix the following bytes' bits in
        core = encoded[first:last]
        if len(core) >= MIN_BASE64_CORE:
            cores.update({core, core.replace("+", "-").replace("/", "_")})
    return cores


def _derived(value: str) -> set[str]:
    """Secrets inside a secret: a DSN's or URL's password (as written and decoded), a conninfo
    string's ``password=``, and a webhook URL's path (its token) when long enough to be one."""
    found = set()
    try:
        parts = urllib.parse.urlsplit(value.strip())
    except ValueError:
        parts = None
    if parts is not None and parts.scheme and parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo:
            written = userinfo.split(":", 1)[1]
            found.update({written, urllib.parse.unquote(written)})
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(path.strip("/")) >= 16:
            found.add(path)
    for match in re.finditer(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", value):
        written = match.group(1)
        found.add(re.sub(r"\\(.)", r"\1", written[1:-1]) if written.startswith("'") else written)
    return {item for item in found if len(item) >= MIN_SECRET_LENGTH and item != value}


def _variants(value: str) -> set[str]:
    """Every form in which ``value`` (and what it holds, ``_derived``) is masked."""
    forms: set[str] = set()
    for item in {value, *_derived(value)}:
        forms |= _escaped_forms(item) | _base64_forms(item)
        # A multi-line secret (a private key) is also caught line by line.
        forms.update(line for line in item.splitlines() if len(line) >= 16)
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _all_cores(value: str) -> set[str]:
    return {core for item in {value, *_derived(value)} for core in _base64_cores(item)}


def register_secret(value: Any, *, persist: bool = True) -> None:
    """Mask ``value`` in every output from now on, and let seals in other processes find it.

    The secrets module calls this for every value it reads; ``start()`` calls it for
    parameters with a secret-looking name. Accepts a str, a SecretValue, or a mapping or
    list of them (a whole Vault secret). Empty and very short values are ignored.
    """
    new = set()
    for item in _leaves(value):
        if len(item) >= MIN_SECRET_LENGTH and item not in _values:
            new.add(item)
    if not new:
        return
    global _pattern, _base64_pattern
    with _lock:
        _values.update(new)
        forms = sorted({form for v in _values for form in _variants(v)}, key=len, reverse=True)
        _pattern = re.compile("|".join(map(re.escape, forms)))
        cores = sorted({core for v in _values for core in _all_cores(v)}, key=len, reverse=True)
        _base64_pattern = re.compile("|".join(map(re.escape, cores))) if cores else None
    if persist:
        FingerprintStore.default().add(new)
    # Inside a kernel, the first registered secret turns the output filters on, even when the
    # notebook fetched it before calling start() (records/__init__ plugs the kernel in).
    for listener in _listeners:
        listener()


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, SecretValue):
        yield value.reveal()
    elif isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _leaves(item)


def register_profile_secrets(profile: Any, *, persist: bool = True) -> int:
    """Register every ``SecretStr`` a profile holds (DSNs, the Vault token, the webhook URL...):
    ``start()`` calls it, so none of them can reach a record even if a runbook prints it.
    ``persist=False`` masks them in this process only, writing no fingerprint (a command that may
    still refuse its input must leave nothing behind). Returns how many values were found."""
    from pydantic import BaseModel, SecretStr

    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, SecretStr):
            found.append(node.get_secret_value())
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name, None))
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, (list, tuple, set, frozenset)):
            for item in node:
                walk(item)

    walk(profile)
    register_secret(found, persist=persist)
    return len(found)


def registered_count() -> int:
    return len(_values)


def forget_secrets() -> None:
    """Empty the in-process registry (tests only; fingerprints on disk stay)."""
    global _pattern, _base64_pattern
    with _lock:
        _values.clear()
        _pattern = None
        _base64_pattern = None


def _mask_shapes(text: str) -> str:
    for shape in TOKEN_SHAPES.values():
        if shape.groups:
            text = shape.sub(lambda m: m.group(0).replace(m.group(1), MASK), text)
        else:
            text = shape.sub(MASK, text)
    return text


def redact(text: str, *, shapes: bool = True) -> str:
    """``text`` with every registered value and token shape replaced by ``********``."""
    if not isinstance(text, str) or not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if _base64_pattern is not None:
        text = _mask_base64_runs(text, _base64_pattern)
    if shapes:
        text = _mask_shapes(text)
    if "\x1b[" in text:
        # Colour codes can split a value (a highlighted traceback line): judge the plain text,
        # and if it still holds a secret, give up the colours rather than the secret.
        plain = strip_ansi(text)
        cleaned = redact(plain, shapes=shapes)
        if cleaned != plain:
            return cleaned
    return text


def _mask_base64_runs(text: str, cores: re.Pattern[str]) -> str:
    """Mask the whole base64 run around each registered value's core: the characters at its edges
    encode bits of the value too."""
    pieces, last = [], 0
    for match in cores.finditer(text):
        start, end = match.start(), match.end()
        if start < last:
            continue
        while start > last and text[start - 1] in _BASE64_CHARS:
            start -= 1
        while end < len(text) and (text[end] in _BASE64_CHARS or text[end] == "="):
            end += 1
        pieces += [text[last:start], MASK]
        last = end
    return "".join(pieces) + text[last:] if pieces else text


def redact_object(value: Any, *, shapes: bool = True, _key: str = "") -> Any:
    """A copy of a JSON-like structure (a message, a display bundle) with strings redacted.

    Image payloads are left alone: they are base64 pixels, not text that could hold a value.
    """
    if isinstance(value, str):
        return value if _key.startswith("image/") and not _key.startswith("image/svg") else redact(value, shapes=shapes)
    if isinstance(value, dict):
        return {
            (redact(k, shapes=shapes) if isinstance(k, str) else k): redact_object(v, shapes=shapes, _key=str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_object(v, shapes=shapes, _key=_key) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_object(v, shapes=shapes, _key=_key) for v in value)
    if isinstance(value, SecretValue):
        return MASK
    return value


@dataclass(frozen=True)
class ShapeHit:
    """A token shape found in a text: which shape, and where (offset, length)."""

    shape: str
    offset: int
    excerpt: str
    length: int = 0


def find_shapes(text: str) -> list[ShapeHit]:
    """Every token shape in ``text``, with a masked excerpt to show the reader."""
    hits = []
    for name, shape in TOKEN_SHAPES.items():
        for match in shape.finditer(text):
            start = max(0, match.start() - 20)
            excerpt = redact(text[start : match.end() + 20].replace("\n", " "))
            hits.append(ShapeHit(name, match.start(), excerpt, match.end() - match.start()))
    return hits


class FingerprintStore:
    """Keyed fingerprints of registered values: a seal finds them without knowing them.

    ``<records>/.fingerprints/salt`` (random, 0600) keys BLAKE2b; ``fingerprints.jsonl``
    holds one ``{"length": n, "fp": hex}`` line per value form, appended under O_APPEND so
    concurrent kernels do not clobber each other.
    """

    _default: "FingerprintStore | None" = None

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def default(cls) -> "FingerprintStore":
        from .ledger import records_root

        # Beside the records (RUNBOOKS_RECORDS_URL, else outputs/): the kernel that registers
        # and the seal that scans agree on it, and a test's records folder keeps its own.
        folder = Path(os.environ.get("RUNBOOKS_FINGERPRINTS") or records_root() / ".fingerprints")
        if cls._default is None or cls._default.folder != folder:
            cls._default = cls(folder)
        return cls._default

    def _salt(self, create: bool) -> bytes | None:
        path = self.folder / "salt"
        try:
            return bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError):
            if not create:
                return None
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        salt = _random.token_bytes(16)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another kernel won the race: use its salt
            return bytes.fromhex(path.read_text().strip())
        with os.fdopen(fd, "w") as f:
            f.write(salt.hex())
        return salt

    @staticmethod
    def _digest(salt: bytes, text: str) -> str:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=salt, digest_size=16).hexdigest()

    @staticmethod
    def _prefilter(salt: bytes, text: str) -> int:
        """The top bits of a keyed polynomial hash of ``text``: ``RollingWindows``' value for the one
        window that is all of ``text``, in plain Python (registering a secret, often before a
        runbook's first change, need not import numpy)."""
        base, hashed, power = RollingWindows.base(salt), 0, 1
        for char in text:
            hashed = (hashed + ord(char) * power) % 2**64
            power = power * base % 2**64
        return hashed >> (64 - RollingWindows.BITS)

    def add(self, values: Iterable[str]) -> None:
        """Record the fingerprints of ``values`` (and of their printed forms)."""
        try:
            salt = self._salt(create=True)
            assert salt is not None
            forms = {form for value in values for form in _variants(value) | _all_cores(value)}
            lines = sorted(
                {json.dumps({"length": len(form), "fp": self._digest(salt, form), "pf": self._prefilter(salt, form)})
                 for form in forms}
            )
            fd = os.open(self.folder / "fingerprints.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write("".join(line + "\n" for line in lines))
        except OSError:
            # The in-process mask still works; the seal falls back to token shapes.
            pass

    def load(self) -> dict[int, set[str]]:
        """Fingerprints by length."""
        return self._entries()[0]

    def _entries(self) -> tuple[dict[int, set[str]], dict[int, set[int] | None]]:
        """Fingerprints by length, and each length's prefilters (None: a line written before
        prefilters existed, so that length is scanned the slow way)."""
        by_length: dict[int, set[str]] = {}
        prefilters: dict[int, set[int] | None] = {}
        try:
            text = (self.folder / "fingerprints.jsonl").read_text()
        except OSError:
            return by_length, prefilters
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                length = int(entry["length"])
                by_length.setdefault(length, set()).add(str(entry["fp"]))
                known = prefilters.setdefault(length, set())
                if "pf" not in entry:
                    prefilters[length] = None
                elif known is not None:
                    known.add(int(entry["pf"]))
            except (ValueError, KeyError, TypeError):
                continue
        return by_length, prefilters

    def finder(self) -> "FingerprintFinder":
        by_length, prefilters = self._entries()
        return FingerprintFinder(self._salt(create=False), by_length, prefilters)


class RollingWindows:
    """A keyed polynomial hash of every window of a text, all at once with numpy.

    Hashing each window with BLAKE2b costs a Python call per character per registered length:
    seconds per record (the seal of one health check took 9 s). Here every window's hash is
    ``sum(code[i+k] * B**k) mod 2**64`` with a secret odd base ``B`` derived from the salt,
    computed for all offsets from one cumulative sum; only its top ``BITS`` bits are stored
    (``pf``), so a match is merely a candidate that the BLAKE2b fingerprint then confirms.
    The prefilter says no more about a value than the fingerprint beside it already does.
    """

    BITS = 20

    def __init__(self, salt: bytes, text: str) -> None:
        import numpy as np

        self.np = np
        base = self.base(salt)
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
            powers = np.cumprod(np.full(len(codes), base, dtype=np.uint64)) * np.uint64(pow(base, -1, 2**64))
            self.inverse = np.cumprod(np.full(len(codes), pow(base, -1, 2**64), dtype=np.uint64)) * np.uint64(base)
            self.sums = np.concatenate(([np.uint64(0)], np.cumsum(codes * powers, dtype=np.uint64)))
        self.length = len(codes)

    @staticmethod
    def base(salt: bytes) -> int:
        """The hash's secret odd base, from the salt."""
        return int.from_bytes(hashlib.blake2b(b"rolling-window-base", key=salt, digest_size=8).digest(), "little") | 1

    def prefilters(self, window: int) -> "Any":
        """The prefilter of the window starting at each offset (an array of length n - window + 1)."""
        np = self.np
        count = self.length - window + 1
        if count <= 0:
            return np.zeros(0, dtype=np.uint64)
        with np.errstate(over="ignore"):
            hashed = (self.sums[window : window + count] - self.sums[:count]) * self.inverse[:count]
        return hashed >> np.uint64(64 - self.BITS)


class FingerprintFinder:
    """Reports the offsets where a registered value appears in a text: a keyed rolling hash of
    every window picks candidates (``RollingWindows``), BLAKE2b confirms each one."""

    def __init__(self, salt: bytes | None, by_length: dict[int, set[str]],
                 prefilters: dict[int, set[int] | None] | None = None) -> None:
        self.salt = salt
        self.by_length = by_length if salt is not None else {}
        self.prefilters = prefilters or {}

    def __bool__(self) -> bool:
        return bool(self.by_length)

    def find(self, text: str) -> list[tuple[int, int]]:
        """``(offset, length)`` of each place in ``text`` where a registered value appears."""
        if not self.by_length or not text:
            return []
        salt, digest, hits = self.salt, FingerprintStore._digest, []
        assert salt is not None
        windows: RollingWindows | None = None
        for length, fingerprints in self.by_length.items():
            if length > len(text):
                continue
            known = self.prefilters.get(length)
            if known is None:  # fingerprints from before prefilters: every window, the slow way
                offsets: Iterable[int] = range(0, len(text) - length + 1)
            else:
                windows = windows or RollingWindows(salt, text)
                np = windows.np
                candidates = np.isin(windows.prefilters(length), np.fromiter(known, dtype=np.uint64, count=len(known)))
                offsets = (int(i) for i in np.flatnonzero(candidates))
            for offset in offsets:
                if digest(salt, text[offset : offset + length]) in fingerprints:
                    hits.append((offset, length))
        return sorted(hits)
