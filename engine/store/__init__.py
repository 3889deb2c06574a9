"""The event store: daily JSONL files, group-commit writer, streaming readers, retention."""
