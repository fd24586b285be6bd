"""Tools that drive Blender from outside: they start Blender (or the bpy module) and
run the add-on in it, where the add-on (`blender_thunder`) runs inside Blender and
the backend never sees Blender at all.

- `batch`: `thunder batch FILE.blend…`, one Blender process per file keying every
  sound strip through the add-on's headless path;
- `demo`: `thunder-train demo`, the main job end to end (backend, keyed takes,
  preview.mp4);
- `render`: Workbench stills, contact sheets and the Blender head renderer of
  `thunder-train corpus preview`, all on the add-on's rig builder.

The commands plug into `thunder` and `thunder-train` as entry points
(pyproject.toml), so neither `backend` nor `training` imports this package or the
add-on. Depends on: backend, training (the stand-in head), blender_thunder, bpy.
"""
