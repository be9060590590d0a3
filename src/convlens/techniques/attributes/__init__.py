"""The attributes family of views."""
