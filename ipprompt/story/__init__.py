"""The story: its TOML schema, loading with located errors, and the key elements of each panel."""
