"""The model runtime, with no web framework: load and check models (registry, checks), run them
(engine, batcher), place the work and hold the limits (service), change them (repository)."""
