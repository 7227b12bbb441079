"""Storage: SQLAlchemy 2 models, queries and Alembic migrations. Never imports telegram."""
