"""The add-on's Blender layer below the operators: rigs, strips, keying, takes and
generation, all through bpy. What needs no bpy lives in `..core`."""
