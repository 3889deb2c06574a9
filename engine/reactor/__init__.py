"""Running playbooks: runner, journal, snapshots, records, guards, process trees."""
