"""Network namespaces: changes through pyroute2, the interface snapshot, read-only rtnetlink, CRIU's lock."""
