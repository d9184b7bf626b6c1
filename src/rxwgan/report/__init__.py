"""A study's tables, figures and pages, read from its files."""
