"""Human-readable summaries and reports."""
