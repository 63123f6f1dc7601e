"""`python -m asyncrl.plot EXPERIMENT [EXPERIMENT ...] [--out=curves.png] [--x=env_steps|time]`:
learning curves of experiments as an image, headless.

The curves come from the experiments' TensorBoard event files (`<experiment>/summaries/`), read
directly: each file is a sequence of TFRecords (length, its masked CRC, an `Event` protobuf, the
data's masked CRC) and tensorboardX ships the `Event` type. Every run of an experiment (the first
and each resume) writes its own file; the time axis adds up the runs' durations, leaving out the
time between a stop and a resume.
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from asyncrl.utils.arguments import OneLineParser
from asyncrl.utils.errors import UserError

DEFAULT_TAG = "episode/return_avg"
INSTALL_HINT = "pip install 'asyncrl[plot]'"
_HEADER = struct.Struct("<QI")  # record length, masked CRC32C of the length
_FOOTER = 4  # masked CRC32C of the data


@dataclass(frozen=True)
class Curve:
    """One scalar of one experiment over training, sorted by env steps."""

    label: str
    env_steps: np.ndarray  # [N]
    seconds: np.ndarray  # [N] training time: the runs' wall-clock durations added up
    values: np.ndarray  # [N]


def read_events(path: Path) -> Iterator:
    """The `Event`s of one event file, in order. A record cut short (a run that is still writing,
    or was killed while writing) ends the file."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    data = path.read_bytes()
    position = 0
    while position + _HEADER.size <= len(data):
        length, length_crc = _HEADER.unpack_from(data, position)
        if masked_crc32c(data[position:position + 8]) != length_crc:
            return  # not a record boundary: a torn write
        start = position + _HEADER.size
        if start + length + _FOOTER > len(data):
            return
        event = Event()
        try:
            event.ParseFromString(data[start:start + length])
        except Exception:  # protobuf's DecodeError: a damaged record ends what can be read
            return
        yield event
        position = start + length + _FOOTER


def read_curves(experiment: Path, tag: str = DEFAULT_TAG, label: str | None = None) -> list[Curve]:
    """The values of `tag` in the experiment's summaries, against env steps and training time:
    one curve, or one per policy (`p<i>/<tag>`) for an experiment of several policies."""
    files = sorted((experiment / "summaries").glob("events.out.tfevents.*"))
    if not files:
        raise UserError(f"{experiment} has no summaries yet (no event files in "
                        f"{experiment / 'summaries'})")
    label = label or experiment.name
    per_policy = re.compile(rf"^p(\d+)/{re.escape(tag)}$")
    runs = []
    for path in files:
        events = list(read_events(path))
        if events:
            points = []  # (curve label, step, wall time, value)
            for e in events:
                for v in e.summary.value:
                    match = per_policy.match(v.tag)
                    if v.tag == tag or match:
                        name = f"{label} p{match.group(1)}" if match else label
                        points.append((name, e.step, e.wall_time, v.simple_value))
            runs.append((events[0].wall_time, events[-1].wall_time, points))
    series: dict[str, tuple[list, list, list]] = {}
    offset = 0.0
    for start, end, points in sorted(runs, key=lambda run: run[0]):
        for name, step, wall_time, value in points:
            steps, seconds, values = series.setdefault(name, ([], [], []))
            steps.append(step)
            seconds.append(offset + wall_time - start)
            values.append(value)
        offset += end - start
    if not series:
        raise UserError(f"{experiment}: no {tag} in its summaries yet (no episode finished, or "
                        f"no summary written: every --experiment_summaries_interval seconds)")
    curves = []
    for name, (steps, seconds, values) in sorted(series.items(), key=lambda item: _natural(item[0])):
        order = np.argsort(steps, kind="stable")
        curves.append(Curve(name, np.asarray(steps)[order], np.asarray(seconds)[order],
                            np.asarray(values)[order]))
    return curves


def read_curve(experiment: Path, tag: str = DEFAULT_TAG, label: str | None = None) -> Curve:
    """The curve of an experiment of one policy (of policy 0 for several)."""
    return read_curves(experiment, tag, label)[0]


def _natural(name: str) -> tuple:
    """p2 before p10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def find_experiment(name: str, train_dir: Path) -> Path:
    """An experiment folder given as a path, or as a name in train_dir."""
    for folder in (Path(name), train_dir / name):
        if (folder / "summaries").is_dir() or (folder / "config.json").is_file():
            return folder
    raise UserError(f"no experiment {name!r}: neither {name} nor {train_dir / name} is an "
                    f"experiment folder (one with config.json or summaries/)")


def _time_axis(curves: Sequence[Curve]) -> tuple[float, str]:
    """A unit that keeps the numbers readable: (seconds per unit, its name)."""
    longest = max(float(c.seconds.max()) for c in curves)
    if longest >= 2 * 3600:
        return 3600.0, "hours"
    if longest >= 2 * 60:
        return 60.0, "minutes"
    return 1.0, "seconds"


def plot_curves(curves: Sequence[Curve], out: Path, x: str, tag: str) -> None:
    """Draws the curves against env steps, training time or both (side by side) into `out`."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(f"asyncrl.plot needs matplotlib, which is not installed: "
                        f"{INSTALL_HINT}") from None
    axes_x = ["env_steps", "time"] if x == "both" else [x]
    figure = Figure(figsize=(6.0 * len(axes_x), 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # headless: draws into memory, no display needed
    unit, unit_name = _time_axis(curves)
    for column, axis_x in enumerate(axes_x):
        axes = figure.add_subplot(1, len(axes_x), column + 1)
        for curve in curves:
            xs = curve.env_steps if axis_x == "env_steps" else curve.seconds / unit
            axes.plot(xs, curve.values, marker="." if len(xs) < 20 else None, label=curve.label)
        axes.set_xlabel("env steps" if axis_x == "env_steps" else f"training time ({unit_name})")
        axes.set_ylabel(tag)
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize="small")
    try:
        figure.savefig(out)
    except (ValueError, OSError) as e:
        raise UserError(f"--out={out}: cannot write it ({e})") from None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m asyncrl.plot", allow_abbrev=False,
                           description="Learning curves of one or more experiments (overlaid, "
                                       "with a legend) from their TensorBoard summaries, as an "
                                       "image.")
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT",
                        help="An experiment folder, or an experiment name in --train_dir")
    parser.add_argument("--train_dir", default="train_dir",
                        help="Where experiment names are looked up (default: %(default)s)")
    parser.add_argument("--out", default="learning_curves.png",
                        help="The image to write; its extension picks the format: png, svg, pdf "
                             "(default: %(default)s)")
    parser.add_argument("--x", choices=("both", "env_steps", "time"), default="both",
                        help="Against env steps, training time (the runs' wall-clock durations "
                             "added up), or both side by side (default: %(default)s)")
    parser.add_argument("--tag", default=DEFAULT_TAG,
                        help="The summary to plot, e.g. episode/length_avg or "
                             "episode_extra/<name> (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        out = Path(args.out)
        if not out.parent.is_dir():
            raise UserError(f"--out={args.out}: folder {out.parent} does not exist")
        folders = [find_experiment(name, Path(args.train_dir)) for name in args.experiments]
        # Experiments of the same name (in different folders) are told apart by their path.
        names = [folder.name for folder in folders]
        curves = [curve for folder in folders
                  for curve in read_curves(folder, args.tag,
                                           folder.name if names.count(folder.name) == 1 else str(folder))]
        plot_curves(curves, out, args.x, args.tag)
    except UserError as e:
        print(f"asyncrl: error: {e}", file=sys.stderr)
        return 2
    points = ", ".join(f"{c.label}: {len(c.values)} point{'s' * (len(c.values) != 1)} up to "
                       f"{int(c.env_steps[-1])} env steps" for c in curves)
    print(f"wrote {out} ({points})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
