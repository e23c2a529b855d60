"""runtime: OCI bundles, containers and their checkpoint/restore, without runc."""

__all__: list[str] = []
