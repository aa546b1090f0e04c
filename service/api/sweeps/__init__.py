"""The /v1/sweeps resource."""
