"""Linux primitives: syscalls, procfs, capabilities, cgroups, mounts, signals, file modes."""
