"""Traditional script read as simplified, before the rules, lexicons and tokenizer see it."""

from __future__ import annotations

from assistant.routing import Action, Emergency, route
from core.hanzi import simplified
from sentiment.model import classify


def test_traditional_text_is_read_as_simplified_and_simplified_text_is_left_alone() -> None:
    assert simplified("樓道著火了，電梯裡還有人") == "楼道着火了，电梯里还有人"
    assert simplified("显著提升，著名小区") == "显著提升，著名小区"  # no traditional character: untouched
    assert simplified("") == ""


def test_a_resident_who_writes_traditional_characters_is_understood() -> None:
    trapped = route("電梯卡住了，我們被關在裡面出不去")
    assert trapped.action is Action.emergency and trapped.emergency is Emergency.lift
    assert route("樓道著火了，好大的煙").emergency is Emergency.fire
    assert route("物業費怎麼繳").action is not Action.emergency
    assert classify("物業太差勁了，電梯壞了半個月沒人管").label == "neg"
    assert classify("感謝物業保安拾金不昧").label == "pos"
