"""Command line: argv -> calls, and exit codes. No logic of its own."""
