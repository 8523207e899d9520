"""Operating dialbridge: host and config checks, generated Jigasi and Meet settings, logs, CDR
queries (docs/operations.md)."""
