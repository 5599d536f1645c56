"""Adapters between gpusched and the schedulers that embed it (Slurm today)."""
