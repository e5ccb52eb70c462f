"""The writers of a run's logs: CSV files always, TensorBoard and Weights & Biases on request.

``RunLogger(run_dir, backends)`` appends every row to ``RUN/metrics.csv`` (section ``train``) or
``RUN/<section>.csv`` (any other section, e.g. ``eval``), and mirrors it to the chosen backends
under the tags ``<section>/<key>``. A resumed run reopens the same files and, for W&B, the same
run (its id is kept in ``RUN/wandb.json``).
"""

from __future__ import annotations

import csv
import io
import json
import numbers
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import UserError

BACKENDS = ("tensorboard", "wandb")
WANDB_MISSING = "logger=wandb needs the wandb package: pip install 'shortcut-models[wandb]'"
_SECTION = re.compile(r"[A-Za-z0-9_-]+")


def parse_backends(value: str) -> tuple[str, ...]:
    """The backends named by the config key ``logger``: "none", or backends joined by commas."""
    names = [part.strip() for part in str(value).split(",")]
    if names == ["none"]:
        return ()
    if any(name not in BACKENDS for name in names):
        raise ValueError(
            f"logger must be 'none', 'tensorboard', 'wandb' or a comma-separated combination "
            f"such as 'tensorboard,wandb', not {value!r}"
        )
    return tuple(dict.fromkeys(names))


def drop_rows_after(path: Path, step: int) -> None:
    """Keep the header and the rows of training steps <= ``step`` in the CSV file ``path`` (replaced
    atomically; nothing happens when it does not exist). A line cut short by a crash is dropped too."""
    path = Path(path)
    if not path.exists():
        return
    text = path.read_text()
    lines = list(csv.reader(io.StringIO(text)))
    if not lines:
        return
    header, rows = lines[0], lines[1:]
    keep = [row for row in rows if len(row) == len(header) and _step(row[0]) is not None and _step(row[0]) <= step]
    if len(keep) == len(rows) and text.endswith("\n"):
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            csv.writer(fh).writerows([header, *keep])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _step(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


class _CsvTable:
    """One CSV file: the header comes from the first row ever written; later rows follow it."""

    def __init__(self, path: Path, start_step: int | None = None) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if start_step is not None:
            drop_rows_after(path, start_step)
        if path.exists() and path.stat().st_size > 0:
            with open(path, newline="") as fh:
                self.fields = next(csv.reader(fh), None)

    def append(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as fh:
                csv.writer(fh).writerow(self.fields)
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow([_fmt(row.get(key, "")) for key in self.fields])


class RunLogger:
    """Logs rows of scalars for one run directory; use it as a context manager or call ``close``.

    ``backends`` is a subset of :data:`BACKENDS` (or a ``logger`` string for
    :func:`parse_backends`). TensorBoard is skipped silently when it is not installed; W&B is an
    optional extra and raises :class:`UserError` when missing. ``config``, ``project`` and
    ``name`` go to ``wandb.init``. W&B never sees a step go back: rows at steps an earlier session
    already logged (a resumed run repeats those after its checkpoint) go to the CSV files only.
    ``start_step``: the step a run starts or resumes at; the rows of later steps that an earlier
    session wrote (it was stopped after its last checkpoint) are dropped from the CSV files when they
    are opened, so the resumed run writes each step's row once.
    """

    def __init__(
        self,
        run_dir: str | Path,
        backends: Iterable[str] | str = ("tensorboard",),
        config: dict | None = None,
        project: str = "shortcut-models",
        name: str | None = None,
        start_step: int | None = None,
    ) -> None:
        backends = parse_backends(backends) if isinstance(backends, str) else tuple(backends)
        unknown = [b for b in backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown logger backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.start_step = start_step
        self._tables: dict[str, _CsvTable] = {}
        self._wandb = None
        self._wandb_state: dict[str, Any] = {}
        self._wandb_step: int | None = None  # highest step logged to W&B in this session
        if "wandb" in backends:  # first, so that a missing package leaves nothing open behind
            self._open_wandb(config, project, name)
        self._tb = _tensorboard_writer(self.run_dir / "tensorboard") if "tensorboard" in backends else None

    @property
    def wandb_path(self) -> Path:
        """``RUN/wandb.json``: the W&B run id and the last step logged to it."""
        return self.run_dir / "wandb.json"

    def log(self, step: int, values: dict[str, float], section: str = "train") -> None:
        """Append one row (``step`` and ``values``) to the section's CSV file and to the backends."""
        self._table(section).append({"step": step, **values})
        self._to_backends(step, values, section)

    def log_table(
        self, step: int, rows: list[dict[str, float]], section: str, by: str, keys: Iterable[str] | None = None
    ) -> None:
        """Rows of one step that differ in the column ``by`` (e.g. the number of sampling steps).

        Each row is a line of the section's CSV file (``step`` first). The backends get one scalar per
        value of ``keys`` (default: every column but ``by``), tagged ``<section>/<key>/<by>_<value>``.
        """
        table = self._table(section)
        scalars: dict[str, float] = {}
        for row in rows:
            table.append({"step": step, **row})
            for key in keys if keys is not None else [k for k in row if k != by]:
                if key in row:
                    scalars[f"{key}/{by}_{row[by]}"] = row[key]
        self._to_backends(step, scalars, section)

    def _table(self, section: str) -> _CsvTable:
        if not _SECTION.fullmatch(section) or section == "metrics":
            raise ValueError(f"bad log section {section!r}: use letters, digits, '_' or '-' (not 'metrics')")
        table = self._tables.get(section)
        if table is None:
            name = "metrics.csv" if section == "train" else f"{section}.csv"
            table = self._tables[section] = _CsvTable(self.run_dir / name, self.start_step)
        return table

    def _to_backends(self, step: int, values: dict[str, float], section: str) -> None:
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"{section}/{key}", value, step)
        if self._wandb is not None:
            self._log_wandb(step, values, section)

    def close(self, exit_code: int = 0) -> None:
        """Finish the W&B run (``exit_code`` != 0 marks it failed) and close TensorBoard."""
        if self._wandb is not None:
            run, self._wandb = self._wandb, None
            run.finish(exit_code=exit_code)
        if self._tb is not None:
            tb, self._tb = self._tb, None
            tb.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(exit_code=0 if exc_type is None else 1)

    def _open_wandb(self, config: dict | None, project: str, name: str | None) -> None:
        try:
            import wandb
        except ImportError:
            raise UserError(WANDB_MISSING) from None
        if self.wandb_path.exists():
            self._wandb_state = json.loads(self.wandb_path.read_text())
        # WANDB_DIR, when set, wins over the run directory; WANDB_MODE is left to wandb.
        where = {} if os.environ.get("WANDB_DIR") else {"dir": str(self.run_dir)}
        self._wandb = wandb.init(
            project=project, name=name, config=config, id=self._wandb_state.get("id"), resume="allow", **where
        )
        if self._wandb_state.get("id") != self._wandb.id:
            self._wandb_state = {"id": self._wandb.id}
            _write_json_atomic(self.wandb_path, self._wandb_state)

    def _log_wandb(self, step: int, values: dict[str, float], section: str) -> None:
        # Steps must not go back: skip what this session already passed, and what an earlier
        # session logged (a resumed run repeats the steps between its checkpoint and the crash).
        if self._wandb_step is not None and step < self._wandb_step:
            return
        if self._wandb_step is None and step <= self._wandb_state.get("step", -1):
            return
        self._wandb.log({f"{section}/{key}": value for key, value in values.items()}, step=step)
        if step != self._wandb_step:
            self._wandb_step = step
            self._wandb_state["step"] = step
            _write_json_atomic(self.wandb_path, self._wandb_state)


def _tensorboard_writer(log_dir: Path) -> Any:
    """A TensorBoard ``SummaryWriter``, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fmt(value: object) -> str:
    """Floats (Python, NumPy...) with 6 significant digits; anything else as ``str``."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{value:.6g}"
    return str(value)
