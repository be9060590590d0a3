"""The units family of views."""
