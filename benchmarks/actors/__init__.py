"""Actors used only by the benchmarks (``sink`` answers, ``driver`` loops inside the daemon)."""
