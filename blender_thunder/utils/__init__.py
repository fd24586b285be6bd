"""Helpers of the THUNDER add-on. Modules without `bpy` (client, launcher, messages,
resample) are also usable outside Blender."""
