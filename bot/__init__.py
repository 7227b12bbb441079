"""saferelay: the application (settings, services, CLI, catalogues)."""
