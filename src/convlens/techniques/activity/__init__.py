"""The activity family of views."""
