import logging

import pytest

from core.logging import MaskingFilter
from core.masking import mask_id_card, mask_mobile, mask_name, mask_plate, mask_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我电话13812345678，尽快回电", "我电话138****5678，尽快回电"),
        ("打 +86 138-1234-5678 找我", "打 138****5678 找我"),
        ("手机 138 1234 5678", "手机 138****5678"),
        ("身份证110101199003074518登记", "身份证110101********4518登记"),
        ("证件号 11010519491231002X", "证件号 110105********002X"),
        ("车牌粤B12345停错位置", "车牌粤B***45停错位置"),
        ("新能源车 沪AD12345 占了车位", "新能源车 沪A****45 占了车位"),
        ("京A·8K8K8 挡住消防通道", "京A***K8 挡住消防通道"),
        ("邮箱 zhang.san@example.com", "邮箱 z***@example.com"),
    ],
)
def test_mask_text_hides_each_kind_of_personal_data(text: str, expected: str) -> None:
    assert mask_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "物业费每平米2.5元，3栋1单元1502",
        "工单号 202611210001234567 已派单",  # 18 digits but no valid birth date: not an ID card
        "订单 123456789012345",  # 15 digits, not a mobile
        "报修电话 0571-88001234",  # landline stays: it is the company's own number
    ],
)
def test_mask_text_leaves_ordinary_numbers_alone(text: str) -> None:
    assert mask_text(text) == text


def test_mask_mobile_does_not_touch_digits_of_a_longer_number() -> None:
    assert mask_text("流水号 913812345678") == "流水号 913812345678"


def test_value_maskers() -> None:
    assert mask_mobile("13812345678") == "138****5678"
    assert mask_mobile("+86 13812345678") == "138****5678"
    assert mask_id_card("110101199003074518") == "110101********4518"
    assert mask_plate("粤B12345") == "粤B***45"
    assert mask_name("张伟") == "张*"
    assert mask_name("欧阳娜娜") == "欧阳**"
    assert mask_name("") == ""


def test_log_records_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("anju.test.masking")
    logger.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("resident %s called from %s", "110101199003074518", "13812345678")
    assert "13812345678" not in caplog.text
    assert "110101199003074518" not in caplog.text
    assert "138****5678" in caplog.text
