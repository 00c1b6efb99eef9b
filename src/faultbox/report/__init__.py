"""Renderers of results: the console (live), JSON, JUnit XML and a self-contained HTML report.
Each reads `model.result` objects (or their dicts), never live runner objects."""
