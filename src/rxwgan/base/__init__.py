"""Shared plumbing every wing may use: errors, atomic writes, the folder lock, progress,
devices, stop signals, optional extras, figures and the Ray runner."""
