"""Problems: open faults as levels, their kinds declared in `rules/*.problems.yaml` (docs/problems.md)."""
