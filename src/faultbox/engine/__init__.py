"""Kernel-facing mechanism: launching services under seccomp filters, the notification supervisor,
and process teardown. No Starlark and no trace here: the engine reports through callbacks."""
