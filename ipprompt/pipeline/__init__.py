"""From a story to a run folder: settings, plan, execute, commit, and the runners that decide where."""
