"""Install the built zip into the sandboxed user folder, as an artist would."""

import bpy


def install(zip_path: str) -> dict:
    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    bpy.ops.wm.save_userpref()
    return {"result": sorted(result), "addons": sorted(bpy.context.preferences.addons.keys())}
