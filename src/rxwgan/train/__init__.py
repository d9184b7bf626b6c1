"""One WGAN-GP run: its config, losses, steps, state, checkpoints, run folder and loop."""
