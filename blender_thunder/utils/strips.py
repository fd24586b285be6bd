"""Sound strips: their audio file and the time range the scene shows."""
from __future__ import annotations

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
    start_s: float      # audio time of the first visible frame
    end_s: float        # audio time of the end of the visible range
    frame_start: int    # scene frame of the first key (= the strip's visible start)
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


def strip_info(scene, strip) -> StripInfo:
    if strip is None or strip.type != "SOUND" or strip.sound is None:
        raise StripError("no sound strip: select one in the Sequencer (or pick it in the THUNDER panel)")
    fps = scene_fps(scene)
    start = (strip.frame_final_start - strip.frame_start) / fps
    end = (strip.frame_final_end - strip.frame_start) / fps
    if end - start <= 0:
        raise StripError(f"sound strip {strip.name!r} is empty")
    return StripInfo(scene.name, strip.name, audio_file(strip), max(start, 0.0), end,
                     int(strip.frame_final_start), fps)


def find(scene, name: str):
    for s in sound_strips(scene):
        if s.name == name:
            return s
    raise StripError(f"scene {scene.name!r} has no sound strip {name!r}")


def free_channel(scene, frame_start: int, frame_end: int) -> int:
    """The lowest channel with nothing between the two frames."""
    used = {s.channel for s in top_strips(scene)
            if s.frame_final_start < frame_end and s.frame_final_end > frame_start}
    channel = 1
    while channel in used:
        channel += 1
    return channel
