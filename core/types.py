"""Bounded types for what requests carry, shared by every domain's views and schemas.

Ids are PostgreSQL ``integer`` primary keys: a number past 2^31−1 cannot name a row, and sent to
the database it fails there (SQLite refuses past 2^63−1, PostgreSQL past 2^31−1) as a server
error. Bounded here, it is a 422 before any lookup, and the bounds are in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

MAX_ID = 2**31 - 1  # PostgreSQL integer

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
