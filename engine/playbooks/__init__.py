"""Playbooks: schema, lint, compiler, matcher, registry, replay."""
