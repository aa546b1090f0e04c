"""Model aliases and version comparison under /v1/models/{name}."""
