"""Every domain's tables, imported in one place for Alembic and for ``Base.metadata``."""

from accounts import models as accounts_models
from core import models as core_models
from core.db import Base
from knowledge import models as knowledge_models
from org import models as org_models

__all__ = ["Base", "accounts_models", "core_models", "knowledge_models", "org_models"]
