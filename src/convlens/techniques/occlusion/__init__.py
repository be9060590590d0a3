"""The occlusion family of views."""
