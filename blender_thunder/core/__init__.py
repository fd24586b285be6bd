"""The add-on's bpy-free core: it imports, and is tested, in any Python.

`client` (HTTP to the backend, stdlib), `messages` (backend replies checked before
anything touches the scene), `contract` (the backend's names and limits, a checked
copy), `resample` (25 fps to scene frames), `launcher` (the bundled backend's
process), `jobs` (worker threads and the queue the main thread drains), `retarget` (a take
onto any character: the control solve, mappings and presets, Live Link Face CSV). Nothing here
imports bpy: the Blender layer (the add-on's top-level modules and `utils/`) drives it.
"""
