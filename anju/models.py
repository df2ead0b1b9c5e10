"""Every domain's tables, imported in one place for Alembic and for ``Base.metadata``."""

from accounts import models as accounts_models
from channels import models as channels_models
from core import models as core_models
from core.db import Base
from escalation import models as escalation_models
from knowledge import models as knowledge_models
from org import models as org_models

__all__ = [
    "Base",
    "accounts_models",
    "channels_models",
    "core_models",
    "escalation_models",
    "knowledge_models",
    "org_models",
]
