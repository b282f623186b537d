"""Study readers and writers. The front door is `core.io.load_study(path)` (see `core/io/loader.py`)."""
