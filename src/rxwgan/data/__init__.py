"""The users' table, its images decoded once, and the folds: everything before a model."""
