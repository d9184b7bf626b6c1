"""A study on disk: its planned runs, the Ray sweep that trains them, and their status."""
