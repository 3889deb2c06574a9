"""Low-level helpers every layer may use and that use nothing of the engine: process trees, atomic files."""
