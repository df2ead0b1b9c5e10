"""Staff accounts, roles (agent / supervisor / pr / admin) scoped to communities, sessions and tokens."""
