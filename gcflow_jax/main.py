r"""Entry point: flags only.

python -m gcflow_jax.main --config=configs/toy_fm.py --workdir=runs/toy \
    [--config.train.steps=200] [--config=configs/toy_fm.py:smoke]
Rerunning the command resumes an interrupted run; on a finished one it says
so and changes nothing (`--reevaluate` evaluates it again).
"""

import os
import sys

# Config files live in the repository's top-level `configs/` package and
# import `configs.base`; make it importable from any working directory.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_REPO, "configs")) and _REPO not in sys.path:
  sys.path.insert(0, _REPO)

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags

from gcflow_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file[:variant].",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, "
                    "metrics.json, plots).")
flags.DEFINE_bool("reevaluate", False, "Evaluate the run finished in "
                  "--workdir again into metrics_reevaluated.json (metrics.json "
                  "and checkpoints are left as they are).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  try:
    if FLAGS.reevaluate:
      train.reevaluate(FLAGS.config, FLAGS.workdir)
    else:
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except train.Preempted:
    sys.exit(143)  # 128 + SIGTERM: the scheduler sees a preemption.
  except (ValueError, FileNotFoundError, FloatingPointError) as e:
    # Bad input / missing data / divergence: one clear line, no traceback
    # wall (set GCFLOW_TRACEBACK=1 for the full trace).
    if os.environ.get("GCFLOW_TRACEBACK"):
      raise
    print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
