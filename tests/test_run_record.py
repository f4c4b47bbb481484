"""The run log (history across processes) and atomic writes."""

import json
import os

import numpy as np
import pytest

from gcflow_jax import plotting, run_record


def test_summary_of_a_killed_and_resumed_log(tmp_path):
  """Known answer: process 1 logs 10, 20, saves the window at checkpoint
  25, logs 30 and is killed mid-append; process 2 resumes at 25. The
  history holds 10, 20 and process 2's 30 once; the time is 6 + 2 s."""
  log = run_record.RunLog(str(tmp_path))
  assert log.begin(0).n == 0
  log.append("log", 10, metrics={"loss": 1.0}, train_sec=2.0)
  log.append("log", 20, metrics={"loss": 0.5}, train_sec=4.0)
  log.append("window", 25, n=5, sums={"loss": 2.0}, train_sec=5.0)
  log.append("log", 30, metrics={"loss": 0.9}, train_sec=6.0)
  with open(log.path, "a") as f:
    f.write('{"event": "log", "step": 40, "metr')  # torn by kill -9
  window = log.begin(25)
  assert (window.n, window.sums) == (5, {"loss": 2.0})
  window.add({"loss": [0.1] * 5})
  np.testing.assert_allclose(window.pop_means()["loss"], (2.0 + 0.5) / 10)
  log.append("log", 30, metrics={"loss": 0.25}, train_sec=1.5)
  log.append("trained", 30, train_sec=2.0)
  log.append("final", 30, scores={"mmd": 0.125})
  entries = log.read()
  # The entry after the torn line was not glued to it.
  assert [e["event"] for e in entries] == [
      "start", "log", "log", "window", "log", "start", "log", "trained",
      "final"]
  s = log.summary()
  assert s.history == [{"step": 10, "loss": 1.0}, {"step": 20, "loss": 0.5},
                       {"step": 30, "loss": 0.25}]
  assert [r["step"] for r in s.resumes] == [25]
  assert s.resumes[0]["time"].endswith("Z")
  assert s.train_sec == pytest.approx(8.0)
  assert s.final == {"step": 30, "mmd": 0.125}
  # A third process restarting at 20 supersedes the window at 25, the log
  # at 30 and the final scores.
  assert log.begin(20).n == 0
  s = log.summary()
  assert [h["step"] for h in s.history] == [10, 20]
  assert [r["step"] for r in s.resumes] == [25, 20]
  assert s.final is None and 25 not in s.windows


def test_window_means_do_not_depend_on_where_it_was_split():
  whole = run_record.Window()
  whole.add({"loss": [0.1, 0.7, 0.3, 1e-8, 5.0]})
  split = run_record.Window()
  split.add({"loss": [0.1, 0.7]})
  resumed = run_record.Window(split.n, json.loads(json.dumps(split.sums)))
  resumed.add({"loss": [0.3]})
  resumed.add({"loss": [1e-8, 5.0]})
  assert resumed.pop_means() == whole.pop_means()  # bit-identical
  assert resumed.n == 0
  with pytest.raises(ValueError, match="empty log window"):
    resumed.pop_means()


def test_failed_json_write_keeps_the_old_file(tmp_path):
  path = tmp_path / "metrics.json"
  run_record.write_json_atomic(str(path), {"steps": 600, "loss": 0.25})
  old = path.read_bytes()
  # json.dump writes "steps" and then fails on the object: mid-write.
  with pytest.raises(TypeError):
    run_record.write_json_atomic(str(path), {"a": 1, "steps": object()})
  assert path.read_bytes() == old
  assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary left
  assert run_record.read_json(str(path)) == {"steps": 600, "loss": 0.25}
  assert run_record.read_json(str(tmp_path / "missing.json")) is None


def test_failed_sample_plot_keeps_the_old_image(tmp_path, monkeypatch):
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "samples_final.png")
  x = np.random.default_rng(0).normal(size=(200, 2))
  plotting.save_samples_plot(path, x, x)
  with open(path, "rb") as f:
    old = f.read()
  assert old.startswith(b"\x89PNG")

  def torn_savefig(self, fname, **kw):
    fname.write(b"\x89PNG partial")
    raise OSError("disk full")

  monkeypatch.setattr(Figure, "savefig", torn_savefig)
  with pytest.raises(OSError, match="disk full"):
    plotting.save_samples_plot(path, x + 1, x)
  with open(path, "rb") as f:
    assert f.read() == old
  assert os.listdir(tmp_path) == ["samples_final.png"]


def test_atomic_open_rejects_other_modes(tmp_path):
  with pytest.raises(ValueError, match=r"mode='a'.*\('w', 'wb'\)"):
    with run_record.atomic_open(str(tmp_path / "x"), "a"):
      pass
