"""The synthesis family of views."""
