"""The ``nerfpipe`` command: parses options, calls a stage's ``run``, prints the result. No logic."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from nerfpipe import __version__
from nerfpipe.errors import NerfpipeError
from nerfpipe.progress import CONSOLE, RichReporter

app = typer.Typer(
    help="From a folder of phone photos to a Neural Radiance Field and a fly-through video.\n\n"
    "Stages: ingest -> poses -> train -> render; `nerfpipe all SCENE` runs them all, each cached on disk.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        CONSOLE.print(f"nerfpipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


def user_errors(fn):
    """Turn a NerfpipeError into one red sentence and an exit code; Ctrl-C into a calm one."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NerfpipeError as e:
            CONSOLE.print(f"[bold red]error:[/] {e.sentence}", soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            CONSOLE.print(
                "[yellow]interrupted:[/] what had finished is kept; run the same command again to go on."
            )
            raise typer.Exit(130) from None

    return wrapper


def _int_list(values: List[str], option: str) -> tuple[int, ...]:
    """'4,8' or repeated options -> (4, 8); a bad value is a user error."""
    out = []
    for value in values:
        for part in value.replace(",", " ").split():
            try:
                out.append(int(part))
            except ValueError:
                raise NerfpipeError(f"{option} takes whole numbers such as 4,8, not {part!r}.") from None
    return tuple(out)


def _size(size) -> str:
    return f"{size[0]}x{size[1]}"


@app.command()
@user_errors
def ingest(
    photos: Path = typer.Argument(..., help="Folder holding the photos (may be the scene folder itself), or a video (.mp4, .mov)."),
    scene: Path = typer.Option(Path("."), "--scene", "-s", help="Scene folder to write images/, images_4/, images_8/ into."),
    factors: List[str] = typer.Option(["4", "8"], "--factors", "-f", help="Downsampling factors: --factors 4,8 (or repeat: -f 4 -f 8)."),
    frames: int = typer.Option(100, "--frames", help="Frames kept from each video: the sharpest of each of this many windows."),
    force: bool = typer.Option(False, "--force", help="Redo the stage even if it is up to date."),
) -> None:
    """Make the photos upright, RGB and 8-bit in images/, and downsample them into images_4/, images_8/.

    Videos (alone or beside photos) give their sharpest frames, spread through the clip.
    """
    from nerfpipe.stages import ingest as stage

    params = stage.IngestParams(photos=photos, scene=scene, factors=_int_list(factors, "--factors"), frames=frames, force=force)
    res = stage.run(params, RichReporter())
    r = res.result
    if not res.ran:
        CONSOLE.print(f"ingest is up to date: {len(r['images'])} photos in {scene / 'images'} (nothing to do).")
        return
    table = Table(title=None, show_header=True, header_style="bold")
    table.add_column("folder")
    table.add_column("size")
    table.add_column("images", justify="right")
    for folder, size in r["sizes"].items():
        table.add_row(str(scene / folder), _size(size), str(len(r["images"])))
    CONSOLE.print(table)
    CONSOLE.print(
        f"ingest: {len(r['images'])} photos used, {len(r['skipped'])} skipped, {res.seconds:.1f} s."
    )


def main() -> None:
    app(prog_name="nerfpipe")


if __name__ == "__main__":
    main()
