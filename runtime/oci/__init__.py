"""The OCI runtime spec: parsing and validating ``config.json``, and what criu-cr supports of it."""
