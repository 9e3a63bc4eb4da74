import jax

# Tests compare against closed forms to ~1e-10; they need float64. The library itself
# never switches this on.
jax.config.update("jax_enable_x64", True)
