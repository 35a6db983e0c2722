"""Progress reporting: stages talk to a small :class:`Reporter`; the CLI owns the rich output.

A stage calls ``reporter.task(description, total, unit)`` to get a :class:`Task` and advances it
with ``task.advance(n, **stats)``; ``reporter.warn(sentence)`` for a skipped input, and
``reporter.info(sentence)`` for a line worth keeping. Tests use :class:`RecordingReporter`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.markup import escape
from rich.text import Text

CONSOLE = Console(highlight=False)
"""Results (stdout)."""
ERR_CONSOLE = Console(highlight=False, stderr=True)
"""Progress bars, warnings and errors (stderr): ``nerfpipe all ... > log`` still shows what went wrong."""


class Task:
    """A unit of progress: ``advance(n, **stats)``; stats show beside the bar (e.g. psnr=21.3)."""

    def advance(self, n: float = 1, **stats: Any) -> None:  # pragma: no cover - interface
        pass

    def set_total(self, total: float | None) -> None:  # pragma: no cover - interface
        pass


class Reporter:
    """Silent reporter: the base for the rich one and the recording one."""

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None, unit: str = "it") -> Iterator[Task]:
        yield Task()

    def warn(self, sentence: str) -> None:
        pass

    def info(self, sentence: str) -> None:
        pass


class _RateColumn(ProgressColumn):
    """Rate with the task's own unit ('12.3 images/s', '3.1 it/s', '0.4 s/frame')."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        if speed is None:
            return Text(f"- {unit}/s", style="progress.data.speed")
        if speed >= 1 or speed == 0:
            return Text(f"{speed:.1f} {unit}/s", style="progress.data.speed")
        single = unit[:-1] if unit.endswith("s") and len(unit) > 2 else unit  # 's/frame', not 's/frames'
        return Text(f"{1 / speed:.1f} s/{single}", style="progress.data.speed")


class _StatsColumn(ProgressColumn):
    def render(self, task) -> Text:
        stats = task.fields.get("stats") or {}
        parts = []
        for key, value in stats.items():
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
        return Text("  ".join(parts), style="cyan")


class _RichTask(Task):
    def __init__(self, progress: Progress, task_id):
        self._progress = progress
        self._id = task_id
        self._stats: dict[str, Any] = {}

    def advance(self, n: float = 1, **stats: Any) -> None:
        if stats:
            self._stats.update(stats)
            self._progress.update(self._id, advance=n, stats=dict(self._stats))
        else:
            self._progress.update(self._id, advance=n)

    def set_total(self, total: float | None) -> None:
        self._progress.update(self._id, total=total)


class RichReporter(Reporter):
    """Progress bars and messages on the terminal."""

    def __init__(self, console: Console = CONSOLE, verbose: bool = False, err_console: Console = ERR_CONSOLE):
        self.console = console
        self.err_console = err_console
        self.verbose = verbose

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None, unit: str = "it") -> Iterator[Task]:
        progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            _StatsColumn(),
            console=self.err_console,
            transient=False,
        )
        with progress:
            task_id = progress.add_task(description, total=total, unit=unit, stats={})
            yield _RichTask(progress, task_id)

    def warn(self, sentence: str) -> None:
        self.err_console.print(f"[yellow]warning:[/] {escape(sentence)}", soft_wrap=True)

    def info(self, sentence: str) -> None:
        self.console.print(sentence)


@dataclass
class _RecordedTask(Task):
    description: str
    total: float | None
    unit: str
    done: float = 0
    stats: dict = field(default_factory=dict)

    def advance(self, n: float = 1, **stats: Any) -> None:
        self.done += n
        self.stats.update(stats)

    def set_total(self, total: float | None) -> None:
        self.total = total


class RecordingReporter(Reporter):
    """Keeps every task, warning and info line, for tests."""

    def __init__(self) -> None:
        self.tasks: list[_RecordedTask] = []
        self.warnings: list[str] = []
        self.infos: list[str] = []

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None, unit: str = "it") -> Iterator[Task]:
        t = _RecordedTask(description, total, unit)
        self.tasks.append(t)
        yield t

    def warn(self, sentence: str) -> None:
        self.warnings.append(sentence)

    def info(self, sentence: str) -> None:
        self.infos.append(sentence)


class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds``"""

    def __enter__(self) -> "Stopwatch":
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
