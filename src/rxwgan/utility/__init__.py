"""Does the synthetic data help? A TB classifier trained under conditions, and its scores."""
