"""Ingesting real standards as companies have them: site noise removed, chunked by structure,
each passage cited by its heading path; and every file type the admin may upload."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from core.errors import InvalidInput
from knowledge.chunking import MAX_PASSAGE_CHARS
from knowledge.ingest import ParsedDocument, parse_document

ROOT = Path(__file__).resolve().parents[2]


def _corpus_dir() -> Path | None:
    candidates = [
        os.environ.get("ANJU_TEST_CORPUS"),
        ROOT.parent / "shared" / "corpus",
        "/work/shared/corpus",
    ]
    for candidate in candidates:
        if candidate and Path(candidate, "quality-management-guideline.txt").exists():
            return Path(candidate)
    return None


CORPUS = _corpus_dir()
CORPUS_FILES = sorted(p.name for p in CORPUS.glob("*.txt")) if CORPUS else []
needs_corpus = pytest.mark.skipif(
    CORPUS is None and not os.environ.get("CI"), reason="the shared standards corpus is not on this machine"
)

# What document-sharing sites and exports add; none of it may reach a resident.
NOISE = (
    "[bookmark", "_Toc", "VIP", "原创力文档", "book118", "版权申诉", "侵权必究", "相关文档", "最新文档",
    "文档评论", "查看更多", "合集下载", "图片来源网络", "未找到bdjson", "该用户很懒", "实名认证",
    "下载文档前", "本文档由用户", "CONT", "\ufffd", ".docx",
)  # fmt: skip


def _parse(name: str) -> ParsedDocument:
    assert CORPUS is not None, "set ANJU_TEST_CORPUS to the standards corpus"
    return parse_document(name, (CORPUS / name).read_bytes())


@needs_corpus
@pytest.mark.parametrize("name", CORPUS_FILES or ["missing"])
def test_no_site_noise_survives_and_passages_are_sized(name: str) -> None:
    document = _parse(name)
    assert document.passages
    for passage in document.passages:
        for noise in NOISE:
            assert noise not in passage.text and noise not in passage.section(), (noise, passage)
        assert 0 < len(passage.text) <= MAX_PASSAGE_CHARS
    assert [p.ordinal for p in document.passages] == list(range(len(document.passages)))


@needs_corpus
def test_titles_come_from_the_documents_not_the_sites() -> None:
    titles = {name: _parse(name).title for name in CORPUS_FILES}
    assert titles == {
        "inspection-and-improvement-plan.txt": "物业服务质量巡查及改进方案",
        "quality-department-workflows.txt": "物业品质管理部日常工作流程",
        "quality-management-guideline.txt": "物业品质管理工作指引",
        "quality-manager-training.txt": "物业品质经理培训",
        "service-assurance-plan.txt": "物业管理服务保障措施综合方案",
    }


@needs_corpus
def test_the_guideline_is_chunked_by_its_numbering_with_heading_paths() -> None:
    document = _parse("quality-management-guideline.txt")
    by_section = {p.section(): p for p in document.passages}
    lift = by_section["三、品质管理要求 › 3 应急处置要求 › 3.2 电梯困人应急处置标准"]
    assert "被困人员安抚" in lift.text
    assert (
        document.citation(lift)
        == "《物业品质管理工作指引》三、品质管理要求 › 3 应急处置要求 › 3.2 电梯困人应急处置标准"
    )
    # All twelve emergency categories of the standard are their own citable sections.
    emergencies = [s for s in by_section if s.startswith("三、品质管理要求 › 3 应急处置要求 › 3.")]
    assert len(emergencies) == 12
    assert any("燃气泄漏" in s for s in emergencies) and any("高空坠物" in s for s in emergencies)
    # Deeper numbering (1.1.1) nests under its parent; text under a heading stays with it.
    nested = [s for s in by_section if s.endswith("1.1 体系搭建")]
    assert nested and "五、品质保障支撑措施 › 1 培训与能力建设 › 1.1 体系搭建" in nested


@needs_corpus
def test_chinese_numbering_and_unnumbered_part_titles() -> None:
    plan = _parse("inspection-and-improvement-plan.txt")
    sections = [p.section() for p in plan.passages]
    assert "二、巡查组织与职责 › (一)巡查小组构成" in sections
    assert "五、问题处理与改进流程 › (一)问题分级" in sections
    # "1.制定与优化巡查标准:…" is an item of its section's list, not a heading.
    duties = next(p for p in plan.passages if p.section() == "二、巡查组织与职责 › (二)核心职责")
    assert duties.text.startswith("1.制定与优化巡查标准")

    assurance = _parse("service-assurance-plan.txt")
    sections = [p.section() for p in assurance.passages]
    assert "总则与指导思想 › 1 指导思想" in sections
    assert any(s.startswith("核心服务保障措施 › 2 制度保障") for s in sections)
    # Facts of the standard survive cleaning word for word.
    text = "\n".join(p.text for p in assurance.passages)
    assert "15分钟响应,24小时闭环" in text


@needs_corpus
def test_nothing_of_the_document_itself_is_lost() -> None:
    """Every substantial line of the source (bar the noise) ends up in a passage or a heading."""
    from knowledge.cleaning import clean_lines

    for name in CORPUS_FILES:
        document = _parse(name)
        text = "".join(p.text for p in document.passages).replace("\n", "")
        headings = "".join(h for p in document.passages for h in p.heading_path)
        lines = clean_lines((CORPUS / name).read_text(encoding="utf-8").splitlines())  # type: ignore[operator]
        missing = [
            line
            for line in lines
            if len(line) > 12
            and line[-8:] not in text
            and line[-8:] not in headings
            and line != document.title
        ]
        assert missing == [], (name, missing[:3])


# ---- each kind of upload -------------------------------------------------------------------


def test_docx_headings_tables_and_title() -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = "翠湖花园装修管理规定"
    document.add_heading("一、装修申报", level=1)
    document.add_paragraph("业主装修前须到物业服务中心办理装修登记，并签署装修管理协议。")
    document.add_heading("施工时间", level=2)
    document.add_paragraph("工作日 8:00-12:00、14:00-18:00 可进行有噪音的施工；法定节假日不得施工。")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "项目", "押金"
    table.cell(1, 0).text, table.cell(1, 1).text = "装修垃圾清运", "按面积收取"
    buffer = io.BytesIO()
    document.save(buffer)
    parsed = parse_document("装修规定.docx", buffer.getvalue())
    assert parsed.title == "翠湖花园装修管理规定"
    by_section = {p.section(): p.text for p in parsed.passages}
    assert "装修登记" in by_section["一、装修申报"]
    assert "法定节假日不得施工" in by_section["一、装修申报 › 施工时间"]
    assert "装修垃圾清运 | 按面积收取" in by_section["一、装修申报 › 施工时间"]


def test_html_keeps_the_article_and_drops_the_site() -> None:
    page = """<html><head><title>停车管理办法</title><script>var x = "广告";</script></head><body>
    <nav><a href="/">首页</a> | <a href="/vip">VIP会员</a></nav>
    <article><h1>停车管理办法</h1><h2>一、月卡办理</h2>
    <p>业主凭行驶证和房产证明到物业服务中心办理停车月卡。</p>
    <ul><li>临时停车前 30 分钟免费。</li></ul></article>
    <footer>Copyright 版权所有 © 某某网</footer></body></html>"""
    parsed = parse_document("parking.html", page.encode("utf-8"))
    assert parsed.title == "停车管理办法"
    [passage] = parsed.passages
    assert passage.section() == "一、月卡办理"
    assert "停车月卡" in passage.text and "临时停车前 30 分钟免费" in passage.text
    assert "首页" not in passage.text and "广告" not in passage.text and "版权" not in passage.text


def test_pdf_text_is_read() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer)
    page.setTitle("电梯困人应急预案")
    page.setFont("STSong-Light", 12)
    for y, line in zip(
        (760, 740, 720, 700),
        (
            "电梯困人应急预案",
            "一、接警",
            "接到困人报警后，值班人员立即通过对讲安抚被困人员，",
            "并通知电梯维保单位到场救援。",
        ),
        strict=True,
    ):
        page.drawString(72, y, line)
    page.save()
    parsed = parse_document("lift.pdf", buffer.getvalue())
    assert parsed.title == "电梯困人应急预案"
    [passage] = parsed.passages
    assert passage.section() == "一、接警"
    assert "安抚被困人员" in passage.text and "维保单位" in passage.text


def test_markdown_and_gbk_text() -> None:
    md = "# 宠物管理\n\n## 遛狗\n\n出门遛狗须牵绳，及时清理粪便。\n"
    parsed = parse_document("pets.md", md.encode("utf-8"))
    assert parsed.title == "宠物管理"
    assert [(p.section(), p.text) for p in parsed.passages] == [("遛狗", "出门遛狗须牵绳，及时清理粪便。")]
    gbk = "门禁卡办理\n一、新办\n业主携带身份证到物业服务中心办理，每户免费两张。\n".encode("gbk")
    parsed = parse_document("门禁卡.txt", gbk)
    assert parsed.title == "门禁卡办理"
    assert parsed.passages[0].section() == "一、新办"


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("a.exe", b"MZ", "不支持的文件类型 .exe"),
        ("a.txt", b"   \n", "文件是空的"),
        ("a.docx", b"PK\x03\x04 not really a zip", "docx 文件已损坏"),
        ("a.pdf", b"%PDF-1.7\nnot a pdf at all", "pdf 文件已损坏"),
        ("a.html", b"<html><body><script>x()</script></body></html>", "没有可读取的文字"),
    ],
)
def test_bad_files_get_a_clear_error(filename: str, content: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_document(filename, content)


def test_numbered_step_with_a_space_is_not_a_heading() -> None:
    """ "2. 马上拨打 119，…" is a step of the procedure above it, not a section of its own."""
    text = (
        "# 服务标准\n\n### 2.1 火灾\n\n#### 2.1.1 住户自救\n\n"
        "1. 保持冷静。\n2. 马上拨打 119，说清楼栋和楼层。\n3. 用湿毛巾捂住口鼻。\n"
    )
    passages = parse_document("s.md", text.encode()).passages
    assert [p.section() for p in passages] == ["2.1 火灾 › 2.1.1 住户自救"]
    assert "马上拨打 119" in passages[0].text
