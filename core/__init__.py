"""Shared rooms every domain uses: settings, database, queue, auth primitives, errors, logging, masking."""
