"""The assistant's words when it hands a resident on: to a person, to the repair team, to the
duty engineer. Pure functions of what was done (a case's number, the promise its SLA makes), so
the flow that does it (channels.flows) speaks with the assistant's voice without the assistant
knowing how cases and work orders are kept."""

from __future__ import annotations

import re

from assistant.routing import Emergency

# Categories where the national number comes before everything else.
CALL_FIRST = {Emergency.fire, Emergency.gas, Emergency.life, Emergency.explosive}
NATIONAL_NUMBERS: dict[Emergency, str] = {
    Emergency.fire: "119",
    Emergency.gas: "119",
    Emergency.security: "110",
    Emergency.crowd: "110",
    Emergency.explosive: "110",
    Emergency.life: "120",
    Emergency.epidemic: "120",
}
COMPLAINT_WORDS = re.compile(r"投诉|不作为|曝光|12345|举报|退钱|退费")
NEIGHBOUR_WORDS = re.compile(r"邻居|楼上|楼下|隔壁|对门")


def is_complaint(text: str, reason: str, hazard: str | None) -> bool:
    """A hand-over is a complaint (the complaint SLA, 48 hours) when the rules read one, a hazard
    was described, or the resident used a complaint's words."""
    return hazard is not None or reason.startswith("complaint") or bool(COMPLAINT_WORDS.search(text))


def is_dispute(text: str) -> bool:
    """Between neighbours: the property mediates (a longer SLA)."""
    return bool(NEIGHBOUR_WORDS.search(text))


def handed_over(
    *, case_id: int, promise: str, complaint: bool, failed: bool, hazard: str | None, duty_phone: str | None
) -> str:
    if hazard:
        phone = f"值班电话 {duty_phone}" if duty_phone else "小区值班电话"
        return (
            f"您反映的安全隐患（{hazard}）已按紧急转给人工客服（案件编号 {case_id}），"
            "客服会尽快联系您核实并安排处理。"
            f"如果现在就有危险（有人被困、起火、燃气味、进水等），请立即拨打{phone}。"
        )
    if complaint:
        return f"非常抱歉给您带来不好的体验。已为您转接人工客服（案件编号 {case_id}），{promise}。"
    if failed:
        return (
            f"抱歉没能帮到您，已为您转接人工客服（案件编号 {case_id}），{promise}。"
            "您之前说的内容客服都能看到，不用再重复。"
        )
    return (
        f"好的，已为您转接人工客服（案件编号 {case_id}），{promise}。您之前说的内容客服都能看到，不用再重复。"
    )


def passed_on(*, case_id: int, emergency: bool, chitchat: bool, duty_phone: str | None) -> str:
    """The one acknowledgement of a message written while the case waits for a person."""
    if chitchat:
        return "好的，客服看到后会回复您。"
    if emergency:
        phone = f"情况危急请直接拨打值班电话 {duty_phone}。" if duty_phone else ""
        return f"已补充到紧急事件（编号 {case_id}）。请保持电话畅通，{phone}"
    return "已收到，您的消息已转给人工客服，请稍候。"


def work_order_registered(
    *, order_id: int, category: str, location: str, promise: str, needs_location: bool
) -> str:
    where = f" · {location}" if location else ""
    reply = f"已为您登记报修工单（编号 {order_id}，{category}{where}）。{promise}。"
    if needs_location:
        reply += "请告诉我具体位置（几栋几单元几号），方便师傅上门。"
    return reply


def repair_with_the_case(*, order_id: int, handed: str) -> str:
    """A repair asked for inside a complaint: the work order starts now, the person answers the rest."""
    return f"已为您登记报修工单（编号 {order_id}），维修师傅会跟进。{handed}"


def location_added(*, order_id: int, location: str) -> str:
    return f"好的，已把位置（{location}）补充到工单 {order_id}，师傅会按这个地址上门。"


def emergency(
    *, category: Emergency, certain: bool, case_id: int, duty_phone: str | None, steps: str | None
) -> str:
    lines = [f"⚠️ 紧急情况（{category.value}）" if certain else "⚠️ 您描述的情况可能有危险"]
    # The duty chain is paged when the case opens; the resident's own call to the duty phone is
    # still the fastest way to a person, so it comes first.
    national = NATIONAL_NUMBERS.get(category)
    if national and category in CALL_FIRST:
        lines.append(f"请立即拨打 {national}。")
    if duty_phone:
        lines.append(f"请马上拨打小区 24 小时值班电话 {duty_phone}，这是最快找到值班人员的方式。")
    if national and category not in CALL_FIRST:
        lines.append(f"需要报警或急救时请拨打 {national}。")
    lines.append(f"同时请这样做：{steps}" if steps else "请先保证自身安全，远离危险区域。")
    lines.append(
        f"我已登记为紧急事件（编号 {case_id}）。"
        "请告诉我具体位置（几栋几单元几号）和您的联系电话，我会补充进去。"
    )
    return "\n".join(lines)
