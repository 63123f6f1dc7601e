"""asyncrl.plot: reading TensorBoard event files and drawing learning curves, headless."""

import pytest
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.record_writer import RecordWriter

from asyncrl import plot, train
from asyncrl.utils.errors import UserError

matplotlib_image = pytest.importorskip("matplotlib.image")  # the 'plot' extra, in 'test' too


def write_events(path, events):
    """An event file of (wall_time, step, {tag: value}) with every time chosen by the test."""
    writer = RecordWriter(str(path))
    for wall_time, step, scalars in events:
        summary = Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in scalars.items()])
        writer.write(Event(wall_time=wall_time, step=step, summary=summary).SerializeToString())
    writer.close()


def test_reads_every_run_of_an_experiment_and_adds_up_their_durations(tmp_path):
    summaries = tmp_path / "exp" / "summaries"
    summaries.mkdir(parents=True)
    tag = "episode/return_avg"
    write_events(summaries / "events.out.tfevents.1000.host", [
        (1000.0, 0, {}), (1010.0, 100, {tag: 1.5, "perf/fps_10s": 9.0}), (1030.0, 300, {tag: 2.5})])
    # Resumed an hour later; this run's first event comes 5 s after its start.
    write_events(summaries / "events.out.tfevents.5000.host", [
        (5000.0, 300, {}), (5005.0, 400, {tag: 4.0}), (5020.0, 600, {tag: 8.0})])
    curve = plot.read_curve(tmp_path / "exp")
    assert curve.label == "exp"
    assert curve.env_steps.tolist() == [100, 300, 400, 600]
    assert curve.values.tolist() == [1.5, 2.5, 4.0, 8.0]
    assert curve.seconds.tolist() == [10.0, 30.0, 35.0, 50.0]  # the hour in between left out
    assert plot.read_curve(tmp_path / "exp", "perf/fps_10s").values.tolist() == [9.0]


def test_a_record_cut_short_ends_the_file(tmp_path):
    path = tmp_path / "events.out.tfevents.1.host"
    write_events(path, [(1.0, 1, {"a": 1.0}), (2.0, 2, {"a": 2.0})])
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])  # a run killed while writing its last record
    assert [e.step for e in plot.read_events(path)] == [1]
    path.write_bytes(whole + b"\x13\x00")
    assert [e.step for e in plot.read_events(path)] == [1, 2]


@pytest.mark.slow
def test_plot_of_a_tiny_experiment_is_a_png_of_sensible_size(tmp_path, capsys):
    assert train.main(["--env=CartPole-v1", f"--train_dir={tmp_path}", "--experiment=tiny",
                       "--serial_mode=true", "--num_workers=1", "--num_envs_per_worker=8",
                       "--worker_num_splits=1", "--rollout=16", "--batch_size=128",
                       "--encoder_mlp_layers", "16", "--train_for_env_steps=1024"]) == 0
    capsys.readouterr()
    out = tmp_path / "curves.png"
    # By name in --train_dir and by folder; the same experiment twice is told apart by its path.
    assert plot.main(["tiny", str(tmp_path / "tiny"), f"--train_dir={tmp_path}",
                      f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} ({tmp_path / 'tiny'}: 1 point up to ")
    height, width, _ = matplotlib_image.imread(out).shape
    assert (width, height) == (1200, 450) and out.stat().st_size > 10_000
    assert plot.main([str(tmp_path / "tiny"), "--x=time", "--tag=episode/length_avg",
                      f"--out={out}"]) == 0
    assert matplotlib_image.imread(out).shape[:2] == (450, 600)


@pytest.mark.parametrize("setup, argv, message", [
    (None, ["nope"], "no experiment 'nope': neither nope nor"),
    ("config_only", ["exp"], "has no summaries yet"),
    ("no_tag", ["exp"], "no episode/return_avg in its summaries yet"),
    ("no_tag", ["exp", "--out=missing/curves.png"], "folder missing does not exist"),
    ("no_tag", ["exp", "--x=steps"], "invalid choice: 'steps'"),
])
def test_errors_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, setup, argv,
                                               message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train_dir" / "exp").mkdir(parents=True)
    if setup == "config_only":
        (tmp_path / "train_dir" / "exp" / "config.json").write_text("{}")
    if setup == "no_tag":
        (tmp_path / "train_dir" / "exp" / "summaries").mkdir()
        write_events(tmp_path / "train_dir" / "exp" / "summaries" / "events.out.tfevents.1.h",
                     [(1.0, 0, {}), (2.0, 10, {"perf/fps_10s": 3.0})])
    assert plot.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("asyncrl: error: ") and err.count("\n") == 1 and message in err
    assert not list(tmp_path.glob("*.png"))


def test_find_experiment_prefers_a_folder_path(tmp_path):
    (tmp_path / "a" / "summaries").mkdir(parents=True)
    assert plot.find_experiment(str(tmp_path / "a"), tmp_path / "elsewhere") == tmp_path / "a"
    with pytest.raises(UserError):
        plot.find_experiment("a", tmp_path / "elsewhere")
