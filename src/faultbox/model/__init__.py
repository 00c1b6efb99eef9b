"""Plain data: services, faults, scenarios, monitors, events, responses and results. No I/O, no threads."""
