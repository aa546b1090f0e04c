"""Persistence: SQLAlchemy 2 typed models, the engine and session handling, small queries."""
