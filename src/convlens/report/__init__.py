"""The static HTML report, built from saved results only. Never imports torch."""
