"""Parsing whitespace-separated text tables with errors that name the file and line.

vKITTI2's textgt files and KITTI's label files are plain text tables. pandas' own parser
reports bad rows with a C-level message and no file name; this module splits lines itself
(cheap: tens of thousands of lines a second), checks the field count per line and converts
columns with pandas, reporting the first bad line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from sim2real.errors import DataError

BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False}


def read_lines(path: str | Path) -> list[str]:
    """The file's lines (UTF-8). A UTF-8 byte-order mark is an error that says so: it would
    otherwise be an invisible difference in the first field ("wrong header: expected 'frame ...',
    got 'frame ...'")."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise DataError(path, "starts with a UTF-8 byte-order mark (BOM, bytes EF BB BF); save the file as "
                              "UTF-8 without BOM", line=1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(path, f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", line=line) from None
    # lines end at "\n" (an optional "\r" before it is dropped), as editors count them; not
    # str.splitlines, which also breaks at form feeds and other separators and would shift numbers
    lines = text.split("\n" if "\n" in text or "\r" not in text else "\r")  # (old Mac files: "\r" only)
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def parse_table(
    path: str | Path,
    columns: Sequence[str],
    kinds: dict[str, str],
    *,
    header: bool = True,
    optional_last: Sequence[str] = (),
    header_tokens: Sequence[str] | None = None,
    with_lines: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Parse a whitespace-separated table (blank lines are skipped).

    Parameters
    ----------
    columns : expected column names, in file order.
    kinds : column -> "int" | "float" | "bool" | "str".
    header : the first line must be exactly the column names (whitespace-insensitive).
    optional_last : trailing columns that may be absent on every line (e.g. KITTI's score).
    header_tokens : the header as written in the file when it differs from ``columns`` (e.g.
        extrinsic.txt's repeated ``0 0 0 1``, which cannot be DataFrame column names).
    with_lines : also return the 1-based file line of each row (int64 array, row order), for
        errors that name the line: rows are not ``index + 2`` once the file has blank lines.

    A file with no rows has no optional columns (an empty KITTI label file has 15, not 16).
    """
    lines = read_lines(path)
    first = 0
    if header:
        if not lines:
            raise DataError(path, "empty file; expected a header line", line=1)
        got = lines[0].split()
        want = list(header_tokens or columns)
        if got != want:
            raise DataError(path, f"wrong header: expected '{' '.join(want)}', got '{lines[0].strip()}'", line=1)
        first = 1
    rows: list[list[str]] = []
    line_no: list[int] = []
    n_full = len(columns)
    n_min = n_full - len(optional_last)
    width = None
    for i, text in enumerate(lines[first:], start=first + 1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) not in (n_min, n_full):
            expect = str(n_full) if n_min == n_full else f"{n_min} or {n_full}"
            raise DataError(path, f"expected {expect} fields, got {len(fields)}", line=i)
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            raise DataError(path, f"expected {width} fields like the lines above, got {len(fields)}", line=i)
        rows.append(fields)
        line_no.append(i)
    cols = list(columns[: width or n_min])
    lines_arr = np.asarray(line_no, dtype=np.int64)
    if rows:  # fast path: numpy parses the numeric columns; anything unusual takes the checked path below
        arr = np.array(rows, dtype=str)
        fast = {c: _fast_column(arr[:, j], kinds.get(c, "str")) for j, c in enumerate(cols)}
        if all(v is not None for v in fast.values()):
            return (pd.DataFrame(fast), lines_arr) if with_lines else pd.DataFrame(fast)
    raw = pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    out = {}
    for col in cols:
        out[col] = _convert(path, col, kinds.get(col, "str"), raw[col], line_no)
    df = pd.DataFrame(out)
    return (df, lines_arr) if with_lines else df


def _fast_column(values: np.ndarray, kind: str):
    """A column parsed by numpy when that gives exactly what :func:`_convert` gives (str, int and
    float columns of plain numbers), else None (the caller then converts and reports errors)."""
    if kind == "str":
        return values.astype(object)
    if kind not in ("int", "float") or (np.char.find(values, "_") >= 0).any():  # numpy accepts 1_000, pandas not
        return None
    try:
        num = values.astype(np.float64)
    except ValueError:
        return None
    if np.isnan(num).any():
        return None
    if kind == "int":
        if (num % 1 != 0).any() or (np.abs(num) > 2.0 ** 53).any():
            return None
        return num.astype(np.int64)
    return num + 0.0  # -0 -> 0.0, as pandas parses it


def _convert(path, col: str, kind: str, values: pd.Series, line_no: list[int]) -> pd.Series:
    if kind == "str":
        return values.astype(str)
    if kind == "bool":
        mapped = values.str.lower().map(BOOL_WORDS)
        bad = mapped.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(path, f"column '{col}': expected True/False or 1/0, got '{values.iloc[i]}'", line=line_no[i])
        return mapped.astype(bool)
    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(path, f"column '{col}': expected a number, got '{values.iloc[i]}'", line=line_no[i])
    if kind == "int":
        frac = (num % 1 != 0).to_numpy()
        if frac.any():
            i = int(np.argmax(frac))
            raise DataError(path, f"column '{col}': expected an integer, got '{values.iloc[i]}'", line=line_no[i])
        return num.astype(np.int64)
    return num.astype(np.float64)


def format_value(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.7g}"
    return str(v)


def write_table(path: str | Path, df: pd.DataFrame, columns: Sequence[str], *, header: bool = True,
                formatters: dict[str, Callable] | None = None, header_tokens: Sequence[str] | None = None) -> None:
    """Write a space-separated table (the inverse of :func:`parse_table`)."""
    formatters = formatters or {}
    lines = [" ".join(header_tokens or columns)] if header else []
    cols = [df[c].tolist() for c in columns]
    fmts = [formatters.get(c, format_value) for c in columns]
    for row in zip(*cols):
        lines.append(" ".join(f(v) for f, v in zip(fmts, row)))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")
