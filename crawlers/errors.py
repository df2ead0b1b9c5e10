"""Errors of the crawler domain, mapped to HTTP once by core's handler."""

from core.errors import InvalidInput, NotFound


class SourceNotFound(NotFound):
    default_message = "没有这个采集源"


class BadSourceFile(InvalidInput):
    default_message = "采集源配置文件有误"
