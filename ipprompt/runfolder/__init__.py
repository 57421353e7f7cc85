"""The run folder: manifest model, lock, picks and history; the only writer of a run's files."""
