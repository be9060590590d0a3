"""The adversarial family of views."""
