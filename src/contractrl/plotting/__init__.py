"""Figures from saved results only (matplotlib); never trains."""
