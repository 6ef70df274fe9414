"""Streaming readers for production traffic traces (DESIGN §2, requests and workloads).

Four formats, auto-detected from the file's extension and header (CSV) or first object's keys
(JSON lines), or named explicitly:

- ``azure``: Azure LLM inference trace CSV ``TIMESTAMP,ContextTokens,GeneratedTokens``; the
  timestamp is a wall-clock string with 7 fractional digits (``2023-11-16 18:17:03.9799600``),
  parsed here by hand (``datetime`` takes only 6); time = seconds since the first row.
- ``burstgpt``: BurstGPT CSV ``Timestamp,Model,Request tokens,Response tokens,Total tokens,
  Log Type``, time in seconds; a row with 0 response tokens is a failed request: skipped and
  counted in ``failed_requests`` (the format's meaning, not bad data).
- ``mooncake``: Mooncake JSON lines ``timestamp`` (ms), ``input_length``, ``output_length``,
  ``hash_ids`` (prefix blocks, not used); timestamps are bucketed, so ties are common.
- ``generic``: CSV or JSON lines with ``arrival_s,prompt_tokens,output_tokens[,domain]``.

A ``domain`` column or key, in any format, labels each request; without one the workload layer
draws domains from its configured mix.

Readers yield ``(time_s, prompt_tokens, output_tokens, domain | None)`` tuples one row at a time
and never hold the file. Every row is checked: parseable numbers, finite non-negative
non-decreasing time, lengths in ``[1, MAX_TOKENS]``. A bad row raises ``InputError`` naming
``path:line``, or with ``skip_bad`` is skipped and counted; a bad header always stops.

A source that is not a regular file (a pipe, ``/dev/stdin``, a FIFO, process substitution) can
be read only once: ``inspect_trace`` reads it whole (at most ``MAX_STREAM_BYTES``) and every
pass reads that text, so the header check consumes no rows and a second open never blocks.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TextIO

from profiles.errors import InputError

TRACE_FORMATS = ("azure", "burstgpt", "mooncake", "generic")
MAX_TOKENS = 10_000_000  # longer than any context window: such a length is corrupt data

# Columns (CSV) or keys (JSON lines) each format needs: time, prompt length, output length.
_CSV_COLUMNS = {
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    "burstgpt": ("Timestamp", "Request tokens", "Response tokens"),
    "generic": ("arrival_s", "prompt_tokens", "output_tokens"),
}
_JSON_KEYS = {
    "mooncake": ("timestamp", "input_length", "output_length"),
    "generic": ("arrival_s", "prompt_tokens", "output_tokens"),
}
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")

Row = tuple[float, int, int, "str | None"]  # (trace time s, prompt tokens, output tokens, domain)


@dataclass(slots=True)
class WorkloadStats:
    """Counts filled in while a workload streams (reset at the start of each pass)."""

    rows_read: int = 0  # data rows read from the source (bad and failed rows included)
    bad_rows_skipped: int = 0  # malformed rows skipped (only with skip_bad_rows)
    failed_requests: int = 0  # BurstGPT rows with 0 response tokens (failures, skipped)
    prompts_clamped: int = 0  # prompts cut to max_prompt_tokens
    outputs_clamped: int = 0  # outputs cut to max_output_tokens
    requests: int = 0  # requests yielded


@dataclass(frozen=True)
class TraceFile:
    """A trace file whose header has been checked (what ``inspect_trace`` found)."""

    path: str  # as the user gave it (used in error locations)
    format: str  # one of TRACE_FORMATS
    kind: str  # "csv" or "jsonl"
    columns: tuple[str, ...]  # CSV header, or the first JSON object's keys
    has_domain: bool  # rows carry their own domain label (a "domain" column or key)
    text: str | None = None  # the whole stream, read once, when the source is not a regular file


def inspect_trace(path: str, fmt: str | None = None) -> TraceFile:
    """Open ``path``, read its header or first object, and resolve its format (eager checks)."""
    if fmt is not None and fmt not in TRACE_FORMATS:
        raise InputError(f"unknown trace format {fmt!r} (known: {', '.join(TRACE_FORMATS)})")
    text = _slurp(path) if not _regular(path) else None
    first, line = _first_line(path, text)
    kind = "jsonl" if first.lstrip().startswith("{") else "csv"
    if kind == "csv" and Path(path).suffix.lower() in _JSON_SUFFIXES:
        raise InputError("expected a JSON object on the first line", where=f"{path}:{line}")
    if kind == "jsonl":
        keys = tuple(_json_object(first, path, line))
        fmt = fmt or _match(_JSON_KEYS, keys, path, line)
        _require(_JSON_KEYS, fmt, keys, "key", path, line)
    else:
        keys = _csv_header(first, path, line)
        fmt = fmt or _match(_CSV_COLUMNS, keys, path, line)
        _require(_CSV_COLUMNS, fmt, keys, "column", path, line)
    return TraceFile(path, fmt, kind, keys, "domain" in keys, text)


def read_trace(trace: TraceFile, stats: WorkloadStats, skip_bad: bool = False) -> Iterator[Row]:
    """Yield the checked rows of ``trace`` in file order, counting into ``stats``."""
    rows = _jsonl_rows(trace) if trace.kind == "jsonl" else _csv_rows(trace)
    failures = trace.format == "burstgpt"
    last_t = -math.inf  # time of the last good row
    for line, row in rows:
        stats.rows_read += 1
        if type(row) is tuple:  # fast path for the common good row; NaN fails every comparison
            t, prompt, output, domain = row
            good = (
                0.0 <= t < math.inf
                and t >= last_t
                and 1 <= prompt <= MAX_TOKENS
                and 1 <= output <= MAX_TOKENS
            )
            problem = None if good and domain is None else _check(row, last_t, failures)
        else:
            problem = row
        if problem is None:
            last_t = row[0]
            yield row
        elif problem == _FAILED:
            last_t = row[0]
            stats.failed_requests += 1
        elif skip_bad:
            stats.bad_rows_skipped += 1
        else:
            raise InputError(problem, where=f"{trace.path}:{line}")
    if stats.rows_read == 0:
        raise InputError("trace has a header but no data rows", where=trace.path)


_FAILED = "failed request"  # marker for BurstGPT failures (not an error)


def _check(row: Row, last_t: float, failures: bool) -> str | None:
    """The problem with a parsed row, ``_FAILED`` for a failed request, or None if it is fine."""
    t, prompt, output, domain = row
    if not math.isfinite(t):
        return f"arrival time is {t}"
    if t < last_t:  # checked before the sign: Azure times are relative to the first row
        return f"arrival time goes backwards ({t:.9g} s after {last_t:.9g} s)"
    if t < 0.0:
        return f"negative arrival time {t:g} s"
    if failures and output == 0:
        return _FAILED
    for name, n in (("prompt", prompt), ("output", output)):
        if n < 1:
            return f"{name} length {n} tokens (must be at least 1)"
        if n > MAX_TOKENS:
            return f"{name} length {n} tokens is absurd (more than {MAX_TOKENS:,})"
    if domain is not None and not domain.strip():
        return "empty domain label"
    return None


# ---- CSV ------------------------------------------------------------------------------------


def _csv_rows(trace: TraceFile) -> Iterator[tuple[int, Row | str]]:
    """``(line, row or problem)`` for each non-blank data row of a CSV trace."""
    names = _CSV_COLUMNS[trace.format]
    it, ip, io = (trace.columns.index(c) for c in names)
    idom = trace.columns.index("domain") if trace.has_domain else None
    width = len(trace.columns)
    time_of = _wallclock() if trace.format == "azure" else float
    with _open(trace.path, trace.text) as f:
        reader = csv.reader(f)
        for header in reader:  # the first non-blank row, checked by inspect_trace
            if header:
                break
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, f"unreadable CSV row: {exc}"
                continue
            except UnicodeDecodeError as exc:
                raise InputError(f"not UTF-8 text ({exc.reason})", where=trace.path) from None
            if len(fields) != width:
                if fields:  # blank lines carry no data
                    yield reader.line_num, f"expected {width} fields, got {len(fields)}"
                continue
            dom = fields[idom] if idom is not None else None
            try:
                row = (time_of(fields[it]), int(fields[ip]), int(fields[io]), dom)
            except ValueError:  # lengths written as "12.0", or a field that does not parse
                try:
                    row = (time_of(fields[it]), _int(fields[ip]), _int(fields[io]), dom)
                except ValueError:
                    row = _which_field(fields, (it, ip, io), names, time_of)
            yield reader.line_num, row


def _which_field(fields: list[str], idx: tuple[int, ...], names, time_of) -> str:
    """Name the first field of a CSV row that does not parse (slow path, bad rows only)."""
    for i, name, parse in zip(idx, names, (time_of, _int, _int), strict=True):
        try:
            parse(fields[i])
        except ValueError:
            return f"{name} {fields[i]!r} is not a valid number"
    return "unparseable row"  # pragma: no cover - one of the three always fails


def _int(text: str) -> int:
    """A token count: an integer, also written as ``12.0`` (raises ValueError otherwise)."""
    try:
        return int(text)
    except ValueError:
        x = float(text)
        if not x.is_integer():
            raise
        return int(x)


def _wallclock() -> Callable[[str], float]:
    """A parser of ``YYYY-MM-DD HH:MM:SS[.fraction][Z|±HH:MM]`` to seconds since the first call.

    Any number of fractional digits (Azure writes 7). Times are kept relative to the first
    row's day so float64 keeps sub-microsecond resolution over weeks of trace. Fast path: the
    ``YYYY-MM-DD HH:MM`` prefix changes once a minute, so its seconds are cached and a row costs
    one dict lookup and one ``float``.
    """
    days: dict[str, float] = {}  # date -> seconds from the first row's day
    minutes: dict[str, float] = {}  # "YYYY-MM-DD HH:MM" -> its seconds from the first row's day
    origin: list[float] = []  # [ordinal of the first row's day, first row's time]

    def full(s: str) -> float:
        if len(s) < 19 or s[4] != "-" or s[7] != "-" or s[10] not in " T" or s[13] != ":":
            raise ValueError(s)
        base = days.get(s[:10])
        if base is None:
            ordinal = date.fromisoformat(s[:10]).toordinal()
            if not origin:
                origin.append(ordinal)
            base = days[s[:10]] = (ordinal - origin[0]) * 86400.0
        h, m, sec = int(s[11:13]), int(s[14:16]), int(s[17:19])
        if not (0 <= h < 24 and 0 <= m < 60 and 0 <= sec < 61 and s[16] == ":"):
            raise ValueError(s)
        if len(minutes) > 100_000:  # weeks of distinct minutes: start the cache afresh
            minutes.clear()
        minutes[s[:16]] = base + h * 3600 + m * 60
        rest = s[19:]
        t = minutes[s[:16]] + sec + (_zone(rest) if rest else 0.0)
        if len(origin) == 1:
            origin.append(t)
        return t - origin[1]

    def parse(s: str) -> float:
        base = minutes.get(s[:16])
        if base is None or len(s) != 27 or s[16] != ":" or s[19] != "." or not s[20:].isdigit():
            return full(s)
        sec = float(s[17:])
        if not 0.0 <= sec < 61.0:
            raise ValueError(s)
        return base + sec - origin[1]

    return parse


def _zone(rest: str) -> float:
    """Seconds contributed by a timestamp's fraction and UTC-offset tail (``.97996+01:00``)."""
    offset = 0.0
    if rest.endswith("Z"):
        rest = rest[:-1]
    elif len(rest) >= 6 and rest[-6] in "+-" and rest[-3] == ":":
        sign = 1.0 if rest[-6] == "-" else -1.0  # 10:00+01:00 is 09:00 UTC
        offset = sign * (int(rest[-5:-3]) * 3600 + int(rest[-2:]) * 60)
        rest = rest[:-6]
    if rest and (rest[0] != "." or not rest[1:].isdigit()):
        raise ValueError(rest)
    return (float(rest) if rest else 0.0) + offset


# ---- JSON lines -----------------------------------------------------------------------------


def _jsonl_rows(trace: TraceFile) -> Iterator[tuple[int, Row | str]]:
    """``(line, row or problem)`` for each non-blank line of a JSON-lines trace."""
    kt, kp, ko = _JSON_KEYS[trace.format]
    scale = 1e-3 if trace.format == "mooncake" else 1.0  # Mooncake timestamps are ms
    with _open(trace.path, trace.text) as f:
        try:
            for line, text in enumerate(f, 1):
                if not text.strip():
                    continue
                try:
                    obj = _json_loads(text)
                except ValueError as exc:
                    yield line, f"bad JSON: {exc.msg} (column {exc.colno})"
                    continue
                if not isinstance(obj, dict):
                    yield line, f"expected a JSON object, got {type(obj).__name__}"
                    continue
                yield line, _json_row(obj, (kt, kp, ko), scale, trace.has_domain)
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason})", where=trace.path) from None


def _json_row(obj: dict, keys: tuple[str, str, str], scale: float, has_domain: bool) -> Row | str:
    """One JSON object as a row, or the problem with it."""
    for k in keys:
        if k not in obj:
            return f"missing key {k!r}"
    t, prompt, output = obj[keys[0]], obj[keys[1]], obj[keys[2]]
    if type(t) not in (int, float):
        return f"{keys[0]} {t!r} is not a number"
    for k, n in zip(keys[1:], (prompt, output), strict=True):
        if not (type(n) is int or (type(n) is float and n.is_integer())):
            return f"{k} {n!r} is not a whole number"
    domain = obj.get("domain")
    if has_domain != ("domain" in obj):
        return "'domain' key must be on every line or on none (as on the first line)"
    if domain is not None and not isinstance(domain, str):
        return f"domain {domain!r} is not a string"
    return (t * scale, int(prompt), int(output), domain)


def _json_object(text: str, path: str, line: int) -> dict:
    try:
        obj = _json_loads(text)
    except ValueError as exc:
        raise InputError(f"bad JSON: {exc.msg}", where=f"{path}:{line}") from None
    if not isinstance(obj, dict):
        raise InputError("expected a JSON object on the first line", where=f"{path}:{line}")
    return obj


# ---- header checks --------------------------------------------------------------------------


MAX_STREAM_BYTES = 1 << 30  # a trace piped in is held in memory: 1 GiB at most


def _regular(path: str) -> bool:
    """True for a regular file (re-openable); False for pipes, FIFOs, /dev/stdin, sockets."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True  # let the open report it


def _slurp(path: str) -> str:
    """Read a non-regular source (pipe, FIFO, process substitution) once, whole."""
    with _open(path) as f:
        try:
            text = f.read(MAX_STREAM_BYTES + 1)
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason})", where=path) from None
        except OSError as exc:
            raise InputError(f"cannot read trace: {exc.strerror or exc}", where=path) from None
    if len(text) > MAX_STREAM_BYTES:
        raise InputError(f"more than {MAX_STREAM_BYTES >> 20} MiB from a stream; save the "
                         "trace to a file and pass its path", where=path)  # fmt: skip
    return text


def _open(path: str, text: str | None = None) -> TextIO:
    """The trace's text: the stream read once (``text``), or the file opened afresh."""
    if text is not None:
        return io.StringIO(text, newline="")
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"cannot read trace: {exc.strerror or exc}", where=path) from None


def _json_loads(text: str):
    """``json.loads`` of one line; numbers too long or too deep raise ValueError (a bad row)."""
    if len(text) > 1_000_000:
        raise json.JSONDecodeError("line longer than 1,000,000 characters", text[:40], 0)
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nesting too deep", text[:40], 0) from None
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(str(exc), text[:40], 0) from None


def _first_line(path: str, text: str | None = None) -> tuple[str, int]:
    """The first non-blank line of the file and its number; an empty file is an error."""
    with _open(path, text) as f:
        try:
            for line, text in enumerate(f, 1):
                if text.strip():
                    return text, line
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason})", where=path) from None
        except OSError as exc:  # e.g. a directory on some platforms
            raise InputError(f"cannot read trace: {exc.strerror or exc}", where=path) from None
    raise InputError("empty trace file", where=path)


def _csv_header(text: str, path: str, line: int) -> tuple[str, ...]:
    try:
        names = tuple(c.strip() for c in next(csv.reader([text.rstrip("\r\n")])))
    except csv.Error as exc:
        raise InputError(f"unreadable CSV header: {exc}", where=f"{path}:{line}") from None
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise InputError(f"duplicate column {dupes[0]!r} in header", where=f"{path}:{line}")
    return names


def _match(table: dict[str, tuple[str, ...]], keys: tuple[str, ...], path: str, line: int) -> str:
    """The format whose required columns/keys all appear in ``keys``."""
    for fmt, needed in table.items():
        if set(needed) <= set(keys):
            return fmt
    known = "; ".join(f"{f}: {', '.join(c)}" for f, c in table.items())
    raise InputError(
        f"unrecognised trace header {', '.join(keys)!s} (expected {known}; or name the format)",
        where=f"{path}:{line}",
    )


def _require(table, fmt: str, keys: tuple[str, ...], what: str, path: str, line: int) -> None:
    """Stop unless ``keys`` holds everything format ``fmt`` needs (the header is bad)."""
    if fmt not in table:
        kind = "JSON lines" if table is _JSON_KEYS else "CSV"
        raise InputError(f"format {fmt!r} is not read from {kind} files", where=f"{path}:{line}")
    missing = [k for k in table[fmt] if k not in keys]
    if missing:
        raise InputError(
            f"missing {what} {missing[0]!r} ({fmt} format needs {', '.join(table[fmt])})",
            where=f"{path}:{line}",
        )
