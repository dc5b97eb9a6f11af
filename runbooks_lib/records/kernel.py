"""Kernel-side filters: nothing registered as secret leaves the kernel for the notebook.

Installed by ``runbooks_lib.start()`` when it runs inside IPython (headless under papermill
or in JupyterLab), and by ``install_filters()`` for notebooks that fetch secrets before
``start``. Each path an output takes from the kernel to the notebook is covered:

- ``print`` / ``sys.stdout`` / ``sys.stderr``: the kernel's stream objects' ``write``;
- ``display(...)``, rich reprs (HTML, Markdown, JSON, DataFrames) and the last expression's
  result: a hook on the display publisher and on the display hook (ipykernel runs both hook
  chains just before sending); DataFrames are masked cell by cell *before* formatting, since
  pandas truncates long cells and a truncated secret would no longer match;
- tracebacks: a custom exception handler that builds the usual coloured traceback, redacts
  it and the exception message, and shows it as IPython would;
- and, as the last line of defence, the kernel session's ``send`` itself: every message
  (streams flushed from the IO thread, errors, execute replies, comms) is redacted there.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

from .redaction import redact, redact_object
from .secret import SecretValue

__all__ = ["install_filters", "filters_installed", "add_tap", "remove_tap"]

_INSTALLED_ATTR = "_veza_redaction_installed"

# Who else sees each message, after redaction: an interactive run's recorder (records.session).
_taps: list[Callable[[str, Any, Any], None]] = []


def add_tap(tap: Callable[[str, Any, Any], None]) -> None:
    """Call ``tap(msg_type, content, parent)`` for every message the kernel sends, redacted."""
    _taps.append(tap)


def remove_tap(tap: Callable[[str, Any, Any], None]) -> None:
    if tap in _taps:
        _taps.remove(tap)


def _tell_taps(msg_or_type: Any, content: Any, parent: Any) -> None:
    if isinstance(msg_or_type, dict):
        msg_type = (msg_or_type.get("header") or {}).get("msg_type") or msg_or_type.get("msg_type", "")
        content, parent = msg_or_type.get("content"), msg_or_type.get("parent_header") or parent
    else:
        msg_type = str(msg_or_type)
    for tap in list(_taps):
        try:
            tap(msg_type, content or {}, parent)
        except Exception:  # noqa: BLE001 - a recorder must never stop the kernel talking
            pass


def filters_installed(ip: Any = None) -> bool:
    ip = ip or _ipython()
    return bool(ip is not None and getattr(ip, _INSTALLED_ATTR, False))


def _ipython() -> Any:
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython else None


def install_filters(ip: Any = None) -> bool:
    """Install every filter in the running IPython kernel (once). False outside IPython."""
    ip = ip or _ipython()
    if ip is None:
        return False
    if getattr(ip, _INSTALLED_ATTR, False):
        return True
    _filter_streams()
    _filter_display(ip)
    ip.set_custom_exc((BaseException,), _show_redacted_traceback)
    _filter_session(ip)
    setattr(ip, _INSTALLED_ATTR, True)
    return True


def _filter_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        write = getattr(stream, "write", None)
        if write is None or getattr(write, "_veza_redacting", False):
            continue

        def redacting_write(text: str, _write: Callable[[str], Any] = write) -> Any:
            return _write(redact(text) if isinstance(text, str) else text)

        redacting_write._veza_redacting = True  # type: ignore[attr-defined]
        try:
            stream.write = redacting_write  # instance attribute: the kernel keeps its own object
        except (AttributeError, TypeError):
            pass  # a stream that refuses attributes is still covered by the session filter


def _redact_message(msg: Any) -> Any:
    if isinstance(msg, dict) and "content" in msg:
        msg["content"] = redact_object(msg["content"])
    return msg


def _mask_frames(obj: Any) -> Any:
    """A DataFrame/Series with secret cells masked before pandas truncates them."""
    pandas = sys.modules.get("pandas")
    if pandas is None or not isinstance(obj, (pandas.DataFrame, pandas.Series)):
        return obj

    def mask(value: Any) -> Any:
        return redact(value) if isinstance(value, str) else (str(value) if isinstance(value, SecretValue) else value)

    masked = obj.copy()
    if isinstance(masked, pandas.Series):
        if masked.dtype == object:
            masked = masked.map(mask)
        masked.index = masked.index.map(mask) if masked.index.dtype == object else masked.index
        return masked
    for column in masked.columns:
        if masked[column].dtype == object:
            masked[column] = masked[column].map(mask)
    if masked.index.dtype == object:
        masked.index = masked.index.map(mask)
    if masked.columns.dtype == object:
        masked.columns = masked.columns.map(mask)
    return masked


def _filter_display(ip: Any) -> None:
    formatter = ip.display_formatter
    format_ = formatter.format

    def masked_format(obj: Any, *args: Any, **kwargs: Any) -> Any:
        data, metadata = format_(_mask_frames(obj), *args, **kwargs)
        return redact_object(data), metadata

    formatter.format = masked_format
    for publisher in (getattr(ip, "display_pub", None), getattr(ip, "displayhook", None)):
        if publisher is not None and hasattr(publisher, "register_hook"):
            publisher.register_hook(_redact_message)


def _show_redacted_traceback(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> Any:
    """IPython's usual traceback, with secrets masked in every line and in the message."""
    try:
        stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
        message = str(value)
    except Exception:  # a broken __str__ must not make IPython fall back to the raw traceback
        stb, message = [f"{etype.__name__}: (the exception could not be formatted)"], ""
    stb = [redact(line) for line in stb]
    shell._showtraceback(etype, redact(message), stb)
    return stb


def _filter_session(ip: Any) -> None:
    session = getattr(getattr(ip, "kernel", None), "session", None)
    if session is None or getattr(session.send, "_veza_redacting", False):
        return
    send = session.send

    def redacting_send(stream: Any, msg_or_type: Any, content: Any = None, parent: Any = None,
                       *args: Any, **kwargs: Any) -> Any:
        if isinstance(msg_or_type, dict) and "content" in msg_or_type:
            msg_or_type = {**msg_or_type, "content": redact_object(msg_or_type["content"])}
        if content is not None:
            content = redact_object(content)
        if _taps:
            _tell_taps(msg_or_type, content, parent)
        return send(stream, msg_or_type, content, parent, *args, **kwargs)

    redacting_send._veza_redacting = True  # type: ignore[attr-defined]
    session.send = redacting_send
