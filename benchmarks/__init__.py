"""Performance benchmarks of the pipeline against the local emulators (``python -m benchmarks``)."""
