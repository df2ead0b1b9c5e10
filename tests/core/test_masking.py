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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A Chinese input method types full-width digits and letters.
        ("电话１３８００１３８０００快来", "电话138****8000快来"),
        ("身份证：１１０１０１１９９００３０７４５１８", "身份证：110101********4518"),
        ("车牌浙Ａ１２３４５", "车牌浙A***45"),
        ("邮箱 ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ", "邮箱 z***@example.com"),
        # Separators between the digits: dots, spaces, dashes of every width, zero-width characters.
        ("打138.0013.8000", "打138****8000"),
        ("打 138 0013 8000 或", "打 138****8000 或"),
        ("打138—0013—8000", "打138****8000"),
        ("打138\u200b0013\u200b8000", "打138****8000"),
        ("打1\u200c3\u200d8\u20600013\ufeff8000", "打138****8000"),
        ("打 +86 138 0013 8000", "打 138****8000"),
        ("身份证 110101 19900307 4518", "身份证 110101********4518"),
        ("身份证 1101 0119 9003 0745 18", "身份证 110101********4518"),
        # Lower-case plates, spaced plates.
        ("浙a12345 停在消防通道", "浙A***45 停在消防通道"),
        ("粤b 12345", "粤B***45"),
        # Around the masked number the text stays exactly as written (full-width punctuation,
        # an emoji joined with zero-width joiners).
        (
            "👨\u200d👩\u200d👧 ３栋，电话１３８００１３８０００！",
            "👨\u200d👩\u200d👧 ３栋，电话138****8000！",
        ),
        ("楼层 12 13812345678", "楼层 12 138****5678"),
    ],
)
def test_mask_text_sees_through_full_width_separators_and_case(text: str, expected: str) -> None:
    assert mask_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "２０２６-１１-２１ １３:４５ ３号楼",  # a date and a time in full-width digits
        "面积138.00平米，单价13.80元",
        "服务器 192.168.100.138",
        "新apple12 在售",  # a word after a province's name, not a plate
        "全角工单号 ２０２６１１２１０００１２３４５６７",
    ],
)
def test_normalising_does_not_mask_ordinary_numbers(text: str) -> None:
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
    assert mask_mobile("１３８ ００１３ ８０００") == "138****8000"
    assert mask_id_card("110101 19900307 4518") == "110101********4518"
    assert mask_plate("浙a12345") == "浙A***45"


def test_log_records_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("anju.test.masking")
    logger.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("resident %s called from %s", "110101199003074518", "13812345678")
    assert "13812345678" not in caplog.text
    assert "110101199003074518" not in caplog.text
    assert "138****5678" in caplog.text


def test_log_records_are_masked_after_normalising(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("anju.test.masking")
    logger.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO):
        said = "电话１３８００１３８０００，备用 138.0013.8001，身份证 110101 19900307 4518"
        logger.info("resident wrote %r", said)
    assert "１３８００１３８０００" not in caplog.text and "138.0013.8001" not in caplog.text
    assert "19900307" not in caplog.text
    assert "138****8000" in caplog.text and "138****8001" in caplog.text


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET /ack/12.1767225600.0123456789abcdef0123456789abcdef 200 3.1ms", "0123456789abcdef"),
        ("POST /opinion/ack/7.1767225600.fedcba9876543210fedcba9876543210 200", "fedcba9876543210"),
        ('"GET /api/chat/stream?community=cuihu&session_id=s3cr3t-0123456789ab HTTP/1.1" 200', "s3cr3t"),
        ("POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=robot-key-123 failed", "robot-key-123"),
        ("GET https://api.weixin.qq.com/cgi-bin/message/custom/send?access_token=tok-456", "tok-456"),
        ("https://open.feishu.cn/open-apis/bot/v2/hook/feishu-key-789 answered 500", "feishu-key-789"),
        ("headers {'authorization': 'Bearer api-token-abc', 'cookie': 'anju_session=cookie-def'}", "-abc"),
        ("headers {'authorization': 'Bearer api-token-abc', 'cookie': 'anju_session=cookie-def'}", "-def"),
        ("body {'session_id': 's3cr3t-session-0001', 'text': '你好'}", "s3cr3t-session"),
    ],
)
def test_log_records_carry_no_tokens_or_session_ids(
    line: str, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("anju.test.redact")
    logger.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("%s", line)
    assert secret not in caplog.text
    assert "[redacted]" in caplog.text


def test_redaction_leaves_ordinary_lines_alone() -> None:
    from core.logging import redact

    for line in ("GET /api/cases/12 200 3.1ms", "case 3 escalated to 紧急", "wechat menu key 'FEE' missing"):
        assert redact(line) == line
