"""Response and resolution times, with the defaults the standards set (see PRODUCT.md).

报修 15 分钟响应、24 小时闭环（小修不过夜）; 投诉 48 小时内初步答复; 设施故障 24 小时内解决;
邻里纠纷 48 小时内调解; emergencies acknowledged within minutes. The escalation issue makes the
policy configurable per company; these are the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from escalation.models import CaseCategory, Priority


@dataclass(frozen=True)
class Sla:
    first_response: timedelta
    resolve: timedelta
    promise: str  # what the resident is told, in their words


REPAIR = Sla(
    timedelta(minutes=15),
    timedelta(hours=24),
    "师傅会在 15 分钟内联系您，一般问题 24 小时内处理完成（小修不过夜）",
)
COMPLAINT = Sla(timedelta(hours=2), timedelta(hours=48), "客服会尽快联系您，48 小时内给您初步答复")
DISPUTE = Sla(timedelta(hours=2), timedelta(hours=48), "客服会尽快联系您，邻里纠纷我们会在 48 小时内协调处理")
INQUIRY = Sla(timedelta(minutes=30), timedelta(hours=24), "客服会尽快在这里回复您")
EMERGENCY = Sla(timedelta(minutes=5), timedelta(hours=4), "值班人员已收到通知，会立即处置")


def case_sla(category: CaseCategory, *, dispute: bool = False) -> Sla:
    if category is CaseCategory.emergency:
        return EMERGENCY
    if category is CaseCategory.repair:
        return REPAIR
    if category is CaseCategory.complaint:
        return DISPUTE if dispute else COMPLAINT
    return INQUIRY


def case_priority(category: CaseCategory) -> Priority:
    if category is CaseCategory.emergency:
        return Priority.urgent
    if category is CaseCategory.complaint:
        return Priority.important
    return Priority.normal
