"""Leaf helpers with no faultbox imports: globs, durations, spelling suggestions."""
