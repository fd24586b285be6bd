"""Sound strips: their audio file and the time range the scene shows."""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass

import bpy

from .compat import scene_fps, sound_strips, top_strips


class StripError(ValueError):
    pass


@dataclass(frozen=True)
class StripInfo:
    """Everything a worker thread needs, copied out of bpy on the main thread."""

    scene: str
    strip: str
    audio_path: str
    start_s: float  # source second heard at frame_start (Sound Offset and trims applied)
    end_s: float  # source second heard at the end of the visible range
    frame_start: int  # scene frame of the first key: the first whole frame with sound
    fps: float

    @property
    def duration(self) -> float:
        return self.end_s - self.start_s


def audio_file(strip) -> str:
    """A readable file with the strip's sound (a packed sound is written to a temp file)."""
    sound = strip.sound
    if sound.packed_file is not None:
        suffix = os.path.splitext(sound.filepath)[1] or ".wav"
        fd, path = tempfile.mkstemp(prefix="thunder-", suffix=suffix)
        with os.fdopen(fd, "wb") as fh:
            fh.write(sound.packed_file.data)
        return path
    path = bpy.path.abspath(sound.filepath, library=sound.library)
    if not os.path.isfile(path):
        raise StripError(f"sound strip {strip.name!r}: audio file not found: {path}")
    return path


def sound_offset(strip) -> float:
    """The strip's Sound Offset in seconds (0 on Blender versions without it).

    Blender plays the sound that many seconds later inside the strip: at scene frame f
    the sequencer plays source second (f - frame_start) / fps - sound_offset, and
    silence where that is before the file's start (measured with the 5.0 mixdown)."""
    try:
        return float(getattr(strip, "sound_offset", 0.0) or 0.0)
    except (TypeError, ValueError):
        return 0.0


def strip_info(scene, strip) -> StripInfo:
    """What the sequencer plays: keys start at the first whole frame of the visible range
    that has sound (a positive Sound Offset delays it), with the source second heard there."""
    if strip is None or strip.type != "SOUND" or strip.sound is None:
        raise StripError("no sound strip: select one in the Sequencer (or pick it in the THUNDER panel)")
    fps = scene_fps(scene)
    offset = sound_offset(strip)

    def source_s(frame: float) -> float:  # the source second heard at a scene frame
        return (frame - strip.frame_start) / fps - offset

    first = int(strip.frame_final_start)
    sound_begins = strip.frame_start + offset * fps  # scene frame where source second 0 plays
    if sound_begins > first:
        first = int(math.ceil(sound_begins - 1e-6))
    end_frame = strip.frame_final_end
    start, end = max(source_s(first), 0.0), source_s(end_frame)
    if first >= end_frame or end - start <= 0:
        if offset:
            raise StripError(
                f"sound strip {strip.name!r} plays no audio: its Sound Offset ({offset:g} s) "
                "pushes the sound past the strip's end"
            )
        raise StripError(f"sound strip {strip.name!r} is empty")
    return StripInfo(scene.name, strip.name, audio_file(strip), start, end, first, fps)


def find(scene, name: str):
    for s in sound_strips(scene):
        if s.name == name:
            return s
    raise StripError(f"scene {scene.name!r} has no sound strip {name!r}")


def free_channel(scene, frame_start: int, frame_end: int) -> int:
    """The lowest channel with nothing between the two frames."""
    used = {s.channel for s in top_strips(scene) if s.frame_final_start < frame_end and s.frame_final_end > frame_start}
    channel = 1
    while channel in used:
        channel += 1
    return channel
