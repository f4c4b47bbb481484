"""evaluate(), reference statistics, validation, sharding and the CLI."""

import importlib
import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gcflow_jax import evaluation
from gcflow_jax.evaluation import cli
from gcflow_jax.evaluation import distances
from gcflow_jax.evaluation import features
from gcflow_jax.evaluation import inception
from gcflow_jax.evaluation.evaluate import make_extractor

# The submodule (the package attribute `evaluate` is the function).
_EV = importlib.import_module("gcflow_jax.evaluation.evaluate")


@pytest.fixture(scope="module")
def digits():
  x, _ = features.load_digits_data()
  return x


def test_fd_digits_small_for_real_data_large_for_noise(digits):
  real = evaluation.evaluate(digits[:900], digits[900:],
                             ["fd_digits", "kid_digits"],
                             kid_subset_size=300, kid_subsets=20)
  noise = np.clip(digits[:900] + 0.5 * np.random.default_rng(0).normal(
      size=digits[:900].shape), -1, 1).astype(np.float32)
  bad = evaluation.evaluate(noise, digits[900:], ["fd_digits", "kid_digits"],
                            kid_subset_size=300, kid_subsets=20)
  assert real["fd_digits"] < 0.5 and abs(real["kid_digits"]) < 0.01
  assert bad["fd_digits"] > 3 * real["fd_digits"]
  assert bad["kid_digits"] > 3 * abs(real["kid_digits"])
  assert real["num_samples"] == 900


def test_reference_stats_cache_and_stats_reference(digits, tmp_path):
  cache = str(tmp_path / "digits_{extractor}.npz")
  a = evaluation.evaluate(digits[:800], digits[800:], ["fd_digits"],
                          reference_cache=cache)
  path = cache.replace("{extractor}", "digits")
  assert os.path.isfile(path)
  st = evaluation.load_stats(path)
  assert st["extractor"] == "digits" and st["num_samples"] == 997
  assert st["features"].shape == (997, 64)
  b = evaluation.evaluate(digits[:800], path, ["fd_digits", "kid_digits"],
                          kid_subset_size=300, kid_subsets=5)
  assert b["fd_digits"] == pytest.approx(a["fd_digits"], rel=1e-9)
  # Same value from the stand-alone function (extractor digits).
  c = evaluation.fid(digits[:800], path, extractor="digits")
  assert c == pytest.approx(a["fd_digits"], rel=1e-9)
  with pytest.raises(ValueError, match="digits statistics"):
    evaluation.evaluate(digits[:800], path, ["fd_mnist"])


def test_sample_fn_resamplings_known_values(monkeypatch):
  # Every set is compared with the whole reference (same size, so no
  # subsetting): each metric is then the distance function applied to the
  # recorded set, and evaluate reports the mean and the ddof=1 std of those.
  ref = np.asarray(jax.random.normal(jax.random.key(1), (250, 2)))
  draw = jax.jit(lambda k, n: jax.random.normal(k, (n, 2)) + 0.1,
                 static_argnums=1)
  drawn = []

  def sample_fn(k, n):
    drawn.append(np.asarray(draw(k, n)))
    return drawn[-1]

  out = evaluation.evaluate(
      sample_fn, ref, "sinkhorn,w2,mmd,energy,kl_hist", num_samples=250,
      resamplings=3, batch_size=250, kl_bins=4, key=jax.random.key(0))
  assert len(drawn) == 3 and out["num_samples"] == 250
  assert not np.allclose(drawn[0], drawn[1])  # independent sets
  eps = distances.default_sinkhorn_epsilon(ref)
  bw = distances.default_mmd_bandwidths(ref)
  fns = {"sinkhorn": lambda x: distances.sinkhorn_divergence(
             x, ref, epsilon=eps),
         "w2": lambda x: distances.exact_w2(x, ref),
         "mmd": lambda x: distances.mmd_rbf(x, ref, bandwidths=bw),
         "energy": lambda x: distances.energy_distance(x, ref),
         "kl_hist": lambda x: distances.kl_hist_2d(x, ref, bins=4)}
  for m, fn in fns.items():
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # kl_hist: few samples
      vals = np.array([fn(x) for x in drawn])
    assert out[m] == pytest.approx(vals.mean(), rel=1e-6, abs=1e-9), m
    assert out[m + "_std"] == pytest.approx(vals.std(ddof=1), rel=1e-5), m
  again = evaluation.evaluate(draw, ref, ["w2"], num_samples=250,
                              resamplings=3, batch_size=250,
                              key=jax.random.key(0))
  assert again["w2"] == out["w2"]  # same key, same numbers


def test_sinkhorn_epsilon_and_mmd_widths_come_from_the_full_reference(
    monkeypatch):
  # 250 samples against a 600-point reference: each resampling is scored
  # against a random 250-point reference subset, but epsilon and the MMD
  # widths are those of the full reference (docs/evaluation.md), the same for
  # every set.
  rng = np.random.default_rng(0)
  ref = np.concatenate([rng.normal(size=(500, 2)),
                        rng.normal(size=(100, 2)) * 3.0 + 4.0])
  calls = {"sinkhorn": [], "mmd": []}
  real = {"sinkhorn": distances.sinkhorn_divergence,
          "mmd": distances.mmd_rbf}

  def spy(name):
    def fn(x, y, **kw):
      v = real[name](x, y, **kw)
      calls[name].append((np.array(x), np.array(y), v))
      return v
    return fn

  monkeypatch.setattr(distances, "sinkhorn_divergence", spy("sinkhorn"))
  monkeypatch.setattr(distances, "mmd_rbf", spy("mmd"))
  out = evaluation.evaluate(
      rng.normal(size=(500, 2)).astype(np.float32), ref, "sinkhorn,mmd",
      num_samples=250, resamplings=2, key=jax.random.key(0))
  eps = distances.default_sinkhorn_epsilon(ref)
  bw = distances.default_mmd_bandwidths(ref)
  for name, kw in (("sinkhorn", {"epsilon": eps}),
                   ("mmd", {"bandwidths": bw})):
    assert len(calls[name]) == 2
    want = []
    for x, y, _ in calls[name]:
      assert y.shape == (250, 2)  # a reference subset
      want.append(real[name](x, y, **kw))
    assert out[name] == pytest.approx(np.mean(want), rel=1e-6), name
  # The test can tell: the subsets' own defaults differ from the reference's.
  y0 = calls["mmd"][0][1]
  assert abs(distances.median_bandwidth(y0) / bw[1] - 1) > 1e-3
  assert abs(distances.default_sinkhorn_epsilon(y0) / eps - 1) > 1e-3


def test_image_vector_metrics_flatten(digits):
  out = evaluation.evaluate(digits[:300], digits[300:600], ["mmd", "w2"])
  assert np.isfinite(out["mmd"]) and out["w2"] > 0


@pytest.mark.parametrize("samples,match", [
    (np.zeros((10, 8, 8, 2), np.float32), r"\[N,H,W,C\] images with C in"),
    (np.zeros((10, 3, 4, 5, 6), np.float32), "got shape"),
    (np.zeros((10, 2), np.int64), "dtype"),
    (np.full((10, 2), np.nan, np.float32), "NaN"),
    (np.full((10, 8, 8, 1), 255.0, np.float32), r"\[-1, 1\]"),
    (np.zeros((1, 2), np.float32), "at least 2"),
])
def test_validation_errors(samples, match):
  with pytest.raises(ValueError, match=match):
    evaluation.evaluate(samples, np.zeros((10, 2), np.float32), ["mmd"])


def test_metric_specific_errors(digits):
  vec = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
  with pytest.raises(ValueError, match="kl_hist needs 2-D"):
    evaluation.evaluate(vec, vec, ["kl_hist"])
  with pytest.raises(ValueError, match="need images"):
    evaluation.evaluate(vec, vec, ["fd_digits"])
  with pytest.raises(ValueError, match="subset of"):
    evaluation.evaluate(vec, vec, ["fidd"])
  with pytest.raises(ValueError, match="D \\+ 1 = 65"):
    evaluation.evaluate(digits[:40], digits[40:], ["fd_digits"])
  with pytest.raises(ValueError, match="same shape"):
    evaluation.evaluate(vec, vec[:, :2], ["mmd"])


def test_fid_without_weights_is_a_clear_error(digits, monkeypatch):
  monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
  with pytest.raises(FileNotFoundError, match=inception.PTH_FILENAME):
    evaluation.evaluate(digits, digits, ["fid"])


def test_uint8_and_float_images_agree(digits):
  u8 = evaluation.preprocess_images(digits, quantize=True)
  assert u8.dtype == np.uint8
  a = evaluation.evaluate(u8[:800], digits[800:], ["fd_digits"])
  b = evaluation.evaluate(digits[:800], digits[800:], ["fd_digits"])
  assert a["fd_digits"] == pytest.approx(b["fd_digits"], rel=1e-9)
  # Clipping, not min-max rescaling.
  over = np.array([[[[-1.3]], [[1.2]]]], np.float32).repeat(2, 0)
  np.testing.assert_array_equal(
      evaluation.preprocess_images(over).ravel(), [0, 255, 0, 255])
  cont = evaluation.preprocess_images(np.full((2, 1, 1, 1), 0.001, np.float32),
                                      quantize=False)
  assert cont.dtype == np.float32 and cont.ravel()[0] == pytest.approx(127.6275)


def test_sharded_extraction_matches_single_device():
  # conftest forces 8 host devices: the extractor shards over all of them.
  assert jax.device_count() > 1
  spec, v, _ = features.load_classifier("mnist")
  ext = make_extractor("mnist", batch_size=20)
  assert ext.batch_size % jax.device_count() == 0
  x = np.random.default_rng(0).integers(0, 256, (37, 28, 28, 1)).astype(
      np.uint8)
  got = ext(x)["pool"]
  want, _ = spec.module().apply(
      v, jnp.asarray(x, jnp.float32) / 127.5 - 1.0)
  assert got.shape == (37, 64)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_cli_scores_vectors_and_writes_flat_json(tmp_path, capsys):
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "gen.npz", samples=rng.normal(size=(400, 2)))
  np.savez(tmp_path / "ref.npz", rng.normal(size=(400, 2)))  # single array
  out = tmp_path / "scores.json"
  rc = cli.main([f"--samples={tmp_path / 'gen.npz'}",
                 f"--reference={tmp_path / 'ref.npz'}",
                 "--metrics=w2,mmd,kl_hist", "--kl_bins=3", "--kl_box=-4,4",
                 "--resamplings=2", f"--output={out}"])
  assert rc == 0
  printed = capsys.readouterr().out
  assert "w2" in printed and "±" in printed
  scores = json.loads(out.read_text())
  assert set(scores) >= {"w2", "w2_std", "mmd", "kl_hist", "num_samples"}
  assert all(isinstance(v, float) for v in scores.values())
  assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_cli_compute_stats_then_score(digits, tmp_path, capsys):
  np.savez(tmp_path / "ref.npz", samples=digits[800:])
  np.savez(tmp_path / "gen.npz", samples=digits[:800])
  stats = tmp_path / "digits_stats.npz"
  assert cli.main([f"--compute_stats={stats}",
                   f"--reference={tmp_path / 'ref.npz'}",
                   "--extractor=digits"]) == 0
  assert cli.main([f"--samples={tmp_path / 'gen.npz'}",
                   f"--reference={stats}", "--metrics=fd_digits",
                   f"--output={tmp_path / 's.json'}"]) == 0
  assert json.loads((tmp_path / "s.json").read_text())["fd_digits"] < 0.5


def test_cli_bad_input_exits_2(tmp_path, capsys):
  np.savez(tmp_path / "gen.npz", samples=np.zeros((5, 8, 8, 2), np.float32))
  rc = cli.main([f"--samples={tmp_path / 'gen.npz'}",
                 f"--reference={tmp_path / 'gen.npz'}", "--metrics=mmd"])
  assert rc == 2
  assert "C in {1,3}" in capsys.readouterr().err
  np.savez(tmp_path / "two.npz", a=np.zeros(3), b=np.zeros(3))
  assert cli.main([f"--samples={tmp_path / 'two.npz'}",
                   f"--reference={tmp_path / 'two.npz'}",
                   "--metrics=mmd"]) == 2
  assert "under 'samples'" in capsys.readouterr().err


@pytest.fixture
def cli_files(tmp_path):
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "gen.npz", samples=rng.normal(size=(50, 2)))
  np.savez(tmp_path / "ref.npz", samples=rng.normal(size=(50, 2)))
  good = tmp_path / "good.npz"
  np.savez(good, samples=rng.normal(size=(50, 2)))
  corrupt = tmp_path / "corrupt.npz"
  corrupt.write_bytes(good.read_bytes()[:200])  # a truncated archive
  (tmp_path / "notes.npz").write_text("mu, sigma\n1, 2\n")  # not NumPy
  os.mkdir(tmp_path / "outdir")
  return tmp_path


def _cli_error(capsys, argv):
  rc = cli.main(argv)
  captured = capsys.readouterr()
  lines = captured.err.strip().splitlines()
  return rc, lines, captured.out


@pytest.mark.parametrize("flag,value,words", [
    ("--samples", "{d}/corrupt.npz", "cannot read"),
    ("--reference", "{d}/corrupt.npz", "cannot read"),
    ("--reference", "{d}/nope.npz", "no file at"),
    ("--reference", None, "required"),  # not given
    ("--reference", "{d}/notes.npz", "not a NumPy .npy/.npz file"),
    ("--reference", "{d}/outdir", "is a directory"),
    ("--output", "{d}/outdir", "is a directory"),
    ("--output", "{d}/gen.npz/scores.json", "not a directory"),
    ("--metrics", "mmd,fidd", "subset of"),
])
def test_cli_bad_arguments_one_line_naming_the_flag(cli_files, capsys,
                                                    monkeypatch, flag, value,
                                                    words):
  d = cli_files
  args = {"--samples": d / "gen.npz", "--reference": d / "ref.npz",
          "--metrics": "mmd", "--output": d / "scores.json"}
  if value is None:
    del args[flag]
  else:
    args[flag] = value.format(d=d)
  scored = []
  if flag == "--output":  # checked before any work
    monkeypatch.setattr(_EV, "load_array",
                        lambda *a, **k: scored.append(a) or 1 / 0)
  before = set(os.listdir(d)) | set(os.listdir(d / "outdir"))
  rc, lines, out = _cli_error(capsys, [f"{k}={v}" for k, v in args.items()])
  assert rc == 2
  assert len(lines) == 1 and lines[0].startswith(f"error: {flag}"), lines
  assert words in lines[0], lines
  assert not scored and out == ""
  assert set(os.listdir(d)) | set(os.listdir(d / "outdir")) == before
def test_write_json_failure_leaves_no_temp_and_keeps_old_file(tmp_path,
                                                              monkeypatch):
  path = tmp_path / "scores.json"
  cli.write_json({"fid": 1.0}, str(path))
  monkeypatch.setattr(json, "dump", lambda *a, **k: 1 / 0)
  with pytest.raises(ZeroDivisionError):
    cli.write_json({"fid": 2.0}, str(path))
  assert os.listdir(tmp_path) == ["scores.json"]
  monkeypatch.undo()
  assert json.loads(path.read_text()) == {"fid": 1.0}
