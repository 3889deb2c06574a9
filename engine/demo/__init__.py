"""Demo agents: small processes that behave like a busy office, so a fresh clone has something to watch."""
