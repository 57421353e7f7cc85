"""Runners decide where panel jobs execute: in this process (local) or on Ray actors (ray_runner)."""
