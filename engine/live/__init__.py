"""Live push over `/ws` (contract §5): merge patches, per-client batching, the fan-out hub, the handler."""
