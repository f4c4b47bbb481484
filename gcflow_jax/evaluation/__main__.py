"""``python -m gcflow_jax.evaluation``: see `gcflow_jax.evaluation.cli`."""

import sys

from gcflow_jax.evaluation.cli import main

if __name__ == "__main__":
  sys.exit(main())
