"""The web assembly (FastAPI app factory, pages) and the `anju` command line."""
