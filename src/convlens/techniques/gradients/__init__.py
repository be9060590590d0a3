"""The gradients family of views."""
