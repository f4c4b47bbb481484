"""gcflow_jax: few-step generative models (consistency models, flow maps,
generalized consistency distribution matching, reflow) in JAX/Flax."""

__version__ = "0.1.0"
