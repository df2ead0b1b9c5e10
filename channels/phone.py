"""Phone calls: a finished call's transcript, our generic form or a speech provider's, read into
the utterances of one conversation.

Alibaba Cloud file transcription (录音文件识别, GetTaskResult, version 4.0): ``StatusCode``
21050000 with ``Result.Sentences`` of ``ChannelId`` (the audio track, from 0), ``BeginTime`` /
``EndTime`` (ms from the start) and ``Text``; 21050003 means no speech was found. Which track is
the caller depends on the call centre's recording, so the request names it (``customer_channel``).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from channels.schemas import CallTranscriptIn, Utterance
from core.errors import AnjuError

ALIYUN_SUCCESS = 21050000
ALIYUN_NO_SPEECH = 21050003  # SUCCESS_WITH_NO_VALID_FRAGMENT: silence, nothing to read


class UnreadableTranscript(AnjuError):
    status_code = 400
    code = "bad_transcript"
    default_message = "无法读取的通话转写"


def utterances(call: CallTranscriptIn) -> list[Utterance]:
    """What was said, in order, without empty lines."""
    if call.utterances is not None:
        items = sorted(call.utterances, key=lambda u: u.begin_ms)
    else:
        assert call.aliyun is not None
        items = aliyun_utterances(call.aliyun, customer_channel=call.customer_channel)
    return [u.model_copy(update={"text": " ".join(u.text.split())}) for u in items if u.text.strip()]


def aliyun_utterances(response: dict[str, Any], *, customer_channel: int = 0) -> list[Utterance]:
    status, status_text = response.get("StatusCode"), response.get("StatusText")
    if status == ALIYUN_NO_SPEECH:
        return []
    if status != ALIYUN_SUCCESS:
        raise UnreadableTranscript(f"阿里云识别任务没有成功（{status} {status_text}），没有可用的转写结果")
    result = response.get("Result")
    if result is None:  # documented: silent audio may come back without a Result
        return []
    if isinstance(result, str):  # some clients hand the Result on re-serialised
        try:
            result = json.loads(result)
        except ValueError:
            raise UnreadableTranscript("阿里云结果中的 Result 不是有效的 JSON") from None
    sentences = result.get("Sentences") if isinstance(result, dict) else None
    if not isinstance(sentences, list):
        raise UnreadableTranscript("阿里云结果缺少 Result.Sentences")
    read: list[tuple[int, int, Utterance]] = []
    for i, sentence in enumerate(sentences):
        try:
            channel = int(sentence["ChannelId"])
            begin, end = int(sentence["BeginTime"]), sentence.get("EndTime")
            utterance = Utterance(
                speaker="customer" if channel == customer_channel else "agent",
                begin_ms=begin,
                end_ms=int(end) if end is not None else None,
                text=str(sentence["Text"])[:2000],
            )
        except (KeyError, TypeError, ValueError, ValidationError):
            raise UnreadableTranscript(f"阿里云结果第 {i + 1} 句缺少 ChannelId、BeginTime 或 Text") from None
        read.append((begin, channel, utterance))
    # Two tracks are not promised to come interleaved: order by time, then by track.
    return [u for _, _, u in sorted(read, key=lambda r: (r[0], r[1]))]
