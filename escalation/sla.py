"""Response and resolution times, with the defaults the standards set (see PRODUCT.md).

报修 15 分钟响应、24 小时闭环（小修不过夜）; 投诉 48 小时内初步答复; 设施故障 24 小时内解决;
邻里纠纷 48 小时内调解; emergencies acknowledged within minutes. A company overrides any of them
per category (table ``sla_policy``); priority 紧急 caps the times at the emergency ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from escalation.models import CaseCategory, Priority, SlaPolicy

BEIJING = timezone(timedelta(hours=8))  # business hours are local time (China Standard Time, no DST)


@dataclass(frozen=True)
class Sla:
    first_response: timedelta
    resolve: timedelta
    promise: str  # what the resident is told, in their words
    remind_before: timedelta = timedelta(minutes=5)


REPAIR = Sla(
    timedelta(minutes=15),  # 报修: 15 分钟响应
    timedelta(hours=24),  # 24 小时闭环, 小修不过夜
    "师傅会在 15 分钟内联系您，一般问题 24 小时内处理完成（小修不过夜）",
    timedelta(minutes=5),
)
COMPLAINT = Sla(
    timedelta(hours=2),  # a person reads it the same morning or afternoon
    timedelta(hours=48),  # 投诉: 48 小时内初步答复
    "客服会尽快联系您，48 小时内给您初步答复",
    timedelta(minutes=30),
)
DISPUTE = Sla(
    timedelta(hours=2),
    timedelta(hours=48),  # 邻里纠纷: 48 小时内调解
    "客服会尽快联系您，邻里纠纷我们会在 48 小时内协调处理",
    timedelta(minutes=30),
)
INQUIRY = Sla(timedelta(minutes=30), timedelta(hours=24), "客服会尽快在这里回复您", timedelta(minutes=10))
EMERGENCY = Sla(
    timedelta(minutes=5),  # emergencies: acknowledged within minutes
    timedelta(hours=4),
    "值班人员已收到通知，会立即处置",
    timedelta(minutes=2),
)

DEFAULTS = {
    CaseCategory.emergency: EMERGENCY,
    CaseCategory.repair: REPAIR,
    CaseCategory.complaint: COMPLAINT,
    CaseCategory.inquiry: INQUIRY,
    CaseCategory.suggestion: INQUIRY,
}


def case_sla(category: CaseCategory, *, dispute: bool = False) -> Sla:
    """The default for a category (what the resident is promised in the hand-off reply)."""
    if category is CaseCategory.complaint and dispute:
        return DISPUTE
    return DEFAULTS[category]


def policy(
    *, session: Session, company_id: int, category: CaseCategory, priority: Priority, dispute: bool = False
) -> Sla:
    """The times that hold for a case: the company's own policy for its category, or the default;
    紧急 never waits longer than an emergency would."""
    sla = case_sla(category, dispute=dispute)
    row = session.scalar(
        select(SlaPolicy).where(SlaPolicy.company_id == company_id, SlaPolicy.category == category)
    )
    if row is not None:
        sla = replace(
            sla,
            first_response=timedelta(seconds=row.first_response_seconds),
            resolve=timedelta(seconds=row.resolve_seconds),
            remind_before=timedelta(seconds=row.remind_before_seconds),
        )
    if priority is Priority.urgent and category is not CaseCategory.emergency:
        urgent = policy(session=session, company_id=company_id, category=CaseCategory.emergency,
                        priority=Priority.urgent)  # fmt: skip
        sla = replace(
            sla,
            first_response=min(sla.first_response, urgent.first_response),
            resolve=min(sla.resolve, urgent.resolve),
            remind_before=min(sla.remind_before, urgent.remind_before),
        )
    return sla


def case_priority(category: CaseCategory) -> Priority:
    if category is CaseCategory.emergency:
        return Priority.urgent
    if category is CaseCategory.complaint:
        return Priority.important
    return Priority.normal


@dataclass(frozen=True)
class BusinessHours:
    """When agents are at their desks (local time). Emergencies do not wait for them."""

    opens: time
    closes: time

    @classmethod
    def parse(cls, text: str) -> BusinessHours:
        """'08:00-20:00'; '00:00-24:00' (or an empty string): around the clock."""
        if not text or text.strip() in ("00:00-24:00", "24h"):
            return cls(time(0), time(23, 59, 59, 999999))
        start, _, end = text.partition("-")
        h1, m1 = (int(x) for x in start.strip().split(":"))
        h2, m2 = (int(x) for x in end.strip().split(":"))
        closes = time(23, 59, 59, 999999) if (h2, m2) == (24, 0) else time(h2, m2)
        if not time(h1, m1) < closes:
            raise ValueError(f"business hours {text!r}: the opening must come before the closing")
        return cls(time(h1, m1), closes)

    def is_open(self, moment: datetime) -> bool:
        local = moment.astimezone(BEIJING).timetz().replace(tzinfo=None)
        return self.opens <= local < self.closes

    def clock_start(self, moment: datetime) -> datetime:
        """When a non-urgent clock starts for something that arrives at ``moment``: at once during
        business hours, otherwise at the next opening."""
        if self.is_open(moment):
            return moment
        local = moment.astimezone(BEIJING)
        opening = local.replace(hour=self.opens.hour, minute=self.opens.minute, second=0, microsecond=0)
        if local.timetz().replace(tzinfo=None) >= self.closes:
            opening += timedelta(days=1)
        return opening
