"""Remove what document sites and office exports add around a standard's text.

Real standards arrive copied from document-sharing sites and exported from Word or slides:
download notices and "VIP" lines, "相关文档" trailers, ``[bookmark: _Toc…]`` markers, a title
repeated three times, slide furniture ("目录", "CONT", "01"), characters cut off mid-word.
Cleaning works line by line and keeps everything that belongs to the document itself.
"""

from __future__ import annotations

import re

BOOKMARK = re.compile(r"\[bookmark:[^\]]*\]")
REPLACEMENT_CHAR = "\ufffd"  # what is left of a character cut off by a site's preview

# A line containing any of these is the site talking, not the document.
_SITE_NOISE = re.compile(
    r"原创力文档|book118|VIP|侵权必究|版权申诉|本站|下载权益|上传文档|付费前请自行鉴别|"
    r"如何避免下载|二次下载|查看更多|合集下载|图片来源网络|未找到bdjson|本文档由用户|"
    r"网站质量审核|实名认证|该用户很懒|\+\s*关注|举报电话|下载文档前|仅部分预览|申请退款|"
    r"如文档侵犯|人工客服工作时间"
)
# Sites number their notices twice ("1. 1、…", "2. 2、…"); documents do not.
_SITE_NOTICE = re.compile(r"^\d+\.\s*\d+、")
# From a line that is exactly one of these, the rest is the site's trailer (comments, related files).
_TRAILER = re.compile(r"^(相关文档|最新文档|文档评论\s*[(（]\d+[)）]|猜你喜欢|相关推荐)$")
_FILE_NAME = re.compile(r"^\S+\.(docx?|pdf|pptx?|xlsx?|txt)(VIP)?$", re.IGNORECASE)
# Slide furniture: section numbers on their own, "CONTENTS" broken over lines, "目录".
_SLIDE_FURNITURE = re.compile(r"^(\d{1,2}|[A-Z]{2,8}|目\s*录|CONTENTS?)$")


# Full-width digits and Latin letters to half-width; Chinese punctuation stays as written.
_FULL_WIDTH_ALNUM = [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)]
_HALF_WIDTH = {code: code - 0xFEE0 for code in _FULL_WIDTH_ALNUM}


def normalise_line(line: str) -> str:
    """No bookmarks, no cut-off characters, half-width digits and letters, single spaces."""
    line = BOOKMARK.sub("", line)
    line = line.replace(REPLACEMENT_CHAR, "").replace("\u3000", " ").replace("\xa0", " ")
    line = line.translate(_HALF_WIDTH)
    return re.sub(r"[ \t]+", " ", line).strip()


def clean_items(lines: list[str]) -> list[tuple[str, str]]:
    """(raw, normalised) for each of the document's own lines, in order, without site noise,
    trailers or repeated lines. The raw line keeps the markers the chunker reads as headings."""
    kept: list[tuple[str, str]] = []
    for raw in lines:
        line = normalise_line(raw)
        if not line:
            continue
        if _TRAILER.match(line):
            break
        if _SITE_NOISE.search(line) or _SITE_NOTICE.match(line):
            continue
        if _FILE_NAME.match(line) or _SLIDE_FURNITURE.match(line):
            continue
        if kept and kept[-1][1] == line:  # a heading repeated by the export
            continue
        kept.append((raw, line))
    return kept


def clean_lines(lines: list[str]) -> list[str]:
    """The document's own lines (see clean_items)."""
    return [line for _raw, line in clean_items(lines)]
