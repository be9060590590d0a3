"""The tsne family of views."""
