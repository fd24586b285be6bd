"""Add-on preferences: where the backend is and how to start the bundled one."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from .core.client import DEFAULT_URL, token_path

DEVICES = [
    ("auto", "Auto", "GPU when the backend's onnxruntime has one, else CPU"),
    ("cpu", "CPU", "Always run on the CPU"),
    ("cuda", "CUDA", "NVIDIA GPU (needs onnxruntime-gpu in the backend's Python)"),
]


class ThunderPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    backend_url: StringProperty(
        name="Backend URL",
        default=DEFAULT_URL,
        description="The THUNDER backend (thunder serve); the bundled one is started on this URL's port",
    )
    token: StringProperty(
        name="Token", subtype="PASSWORD", default="", description="Bearer token; empty: read the backend's token file"
    )
    token_file: StringProperty(name="Token file", subtype="FILE_PATH", default="", description=f"Empty: {token_path()}")
    auto_start: BoolProperty(
        name="Start the bundled backend",
        default=True,
        description="Start the backend shipped with the add-on when none answers",
    )
    python: StringProperty(
        name="Python",
        subtype="FILE_PATH",
        default="",
        description="Your own Python environment to run the bundled backend (e.g. one with "
        "onnxruntime-gpu for CUDA); it needs onnxruntime, numpy, soundfile, soxr, "
        "fastapi, uvicorn, python-multipart. Empty: Blender's own Python with the "
        "wheels this extension installed, else the `thunder` command",
    )
    bundle: StringProperty(
        name="Model bundle", subtype="DIR_PATH", default="", description="Empty: the model bundled with the add-on"
    )
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    flame_dir: StringProperty(
        name="FLAME model folder",
        subtype="DIR_PATH",
        default="",
        description="A real FLAME 2020/2023 folder (FLAME_NEUTRAL.pkl); empty: the bundle's stand-in head",
    )

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "backend_url")
        row = col.row(align=True)
        row.prop(self, "token")
        row.prop(self, "token_file", text="")
        col.separator()
        col.prop(self, "auto_start")
        sub = col.column()
        sub.active = self.auto_start
        sub.prop(self, "python")
        sub.prop(self, "bundle")
        sub.prop(self, "device")
        col.separator()
        col.prop(self, "flame_dir")


def get(context=None):
    """The preferences, or an object with the defaults when the add-on was
    imported without being enabled (headless batch, plain `register()`)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    if addon is not None and addon.preferences is not None:
        return addon.preferences
    return _Defaults()


class _Defaults:
    backend_url = DEFAULT_URL
    token = ""
    token_file = ""
    auto_start = True
    python = ""
    bundle = ""
    device = "auto"
    flame_dir = ""


def client(context=None, timeout: float = 600.0):
    from .core.client import Client

    prefs = get(context)
    token_file = bpy.path.abspath(prefs.token_file) if prefs.token_file else None
    return Client(prefs.backend_url, prefs.token or None, timeout=timeout, token_file=token_file)


CLASSES = (ThunderPreferences,)
