"""The composition root: the one settings object built from flags, environment and TOML, and logging."""
