"""Model exports."""
