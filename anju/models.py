"""Every domain's tables, imported in one place for Alembic and for ``Base.metadata``."""

from accounts import models as accounts_models
from channels import models as channels_models
from conversations import models as conversations_models
from core import models as core_models
from core.db import Base
from crawlers import models as crawlers_models
from escalation import models as escalation_models
from knowledge import models as knowledge_models
from org import models as org_models
from sentiment import models as sentiment_models

__all__ = [
    "Base",
    "accounts_models",
    "channels_models",
    "conversations_models",
    "core_models",
    "crawlers_models",
    "escalation_models",
    "knowledge_models",
    "org_models",
    "sentiment_models",
]
