"""Fine-tuning methods: each a loss, a state pytree and optax transforms (see `base`, `registry`)."""
