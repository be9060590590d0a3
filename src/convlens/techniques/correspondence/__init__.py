"""The correspondence family of views."""
