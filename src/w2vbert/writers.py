"""Transcript files: txt, json, srt, vtt and tsv, as the Whisper command line writes them.

Subtitles need segments, and CTC gives words with times: words are grouped into a segment until a pause,
a length or a character budget ends it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .files import atomic_write_text

FORMATS = ("txt", "json", "srt", "vtt", "tsv")
SEGMENT_PAUSE_S = 0.8  # a silence this long between words starts a new subtitle
SEGMENT_MAX_S = 7.0  # subtitles longer than this are split at the next word
SEGMENT_MAX_CHARS = 84  # two lines of 42 characters, the usual subtitle limit


def segments(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group `[{"text", "timestamp": (start, end)}]` words into `[{"text", "start", "end"}]` segments."""
    out: list[dict[str, Any]] = []
    for word in words:
        start, end = word["timestamp"]
        if out:
            last = out[-1]
            gap, length = start - last["end"], end - last["start"]
            if (
                gap < SEGMENT_PAUSE_S
                and length <= SEGMENT_MAX_S
                and len(last["text"]) + 1 + len(word["text"]) <= SEGMENT_MAX_CHARS
            ):
                last["text"] += " " + word["text"]
                last["end"] = end
                continue
        out.append({"text": word["text"], "start": start, "end": end})
    return out


def timestamp(seconds: float, separator: str) -> str:
    """`HH:MM:SS,mmm` (srt, separator ",") or `HH:MM:SS.mmm` (vtt, ".")."""
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_txt(result: dict[str, Any]) -> str:
    return result["text"] + "\n"


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False, indent=2) + "\n"


def to_srt(result: dict[str, Any]) -> str:
    blocks = [
        f"{i}\n{timestamp(s['start'], ',')} --> {timestamp(s['end'], ',')}\n{s['text']}\n"
        for i, s in enumerate(segments(_words(result)), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(result: dict[str, Any]) -> str:
    blocks = [
        f"{timestamp(s['start'], '.')} --> {timestamp(s['end'], '.')}\n{s['text']}\n" for s in segments(_words(result))
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_tsv(result: dict[str, Any]) -> str:
    """start, end (integer milliseconds, as Whisper's tsv) and text of each segment."""
    rows = [f"{round(s['start'] * 1000)}\t{round(s['end'] * 1000)}\t{s['text']}" for s in segments(_words(result))]
    return "start\tend\ttext\n" + "".join(row + "\n" for row in rows)


def _words(result: dict[str, Any]) -> list[dict[str, Any]]:
    if "chunks" not in result:
        raise ValueError("subtitle formats need word timestamps: transcribe with return_timestamps='word'")
    return result["chunks"]


WRITERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "txt": to_txt,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
}


def write_transcript(result: dict[str, Any], audio_path: str | Path, output_dir: str | Path, fmt: str) -> Path:
    """Write `<output_dir>/<audio stem>.<fmt>`; returns its path."""
    if fmt not in WRITERS:
        raise ValueError(f"output format must be one of {FORMATS}, got {fmt!r}")
    path = Path(output_dir) / f"{Path(audio_path).stem}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, WRITERS[fmt](result))
