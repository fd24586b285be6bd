"""The extension zip: built and validated by Blender's tooling, installed with
Blender's operator into a sandboxed user folder, enabled, disabled."""

from __future__ import annotations

import tomllib
import zipfile

import pytest

pytestmark = pytest.mark.blender


def test_zip_is_valid_and_carries_the_backend(extension_zip, tiny_bundle):
    from build_extension import host_platform, requirements

    assert extension_zip.name == f"thunder-0.1.0-{host_platform().replace('-', '_')}.zip"
    with zipfile.ZipFile(extension_zip) as z:
        names = set(z.namelist())
        manifest = tomllib.loads(z.read("blender_manifest.toml").decode())
    assert manifest["id"] == "thunder" and manifest["blender_version_min"] == "4.2.0"
    # This platform's wheels only: every requirement once, at its pin, and no other platform's binaries.
    generated = manifest["build"]["generated"]
    assert generated["platforms"] == [host_platform()]
    wheels = {w.split("/")[-1] for w in generated["wheels"]}
    assert {f"wheels/{w}" for w in wheels} <= names
    pins = {r.split("==")[0].lower().replace("-", "_"): r.split("==")[1] for r in requirements(host_platform())}
    assert {w.split("-")[0].lower(): w.split("-")[1] for w in wheels} == pins
    assert not any(tag in w for w in wheels for tag in ("win_amd64", "macosx"))
    assert set(manifest["permissions"]) == {"network", "files"}
    assert {
        "__init__.py",
        "rig.py",
        "headless.py",
        "utils/keying.py",
        "backend_runtime/backend/cli.py",
        "backend_runtime/backend/service.py",
        f"backend_runtime/models/{tiny_bundle.name}/manifest.json",
        f"backend_runtime/models/{tiny_bundle.name}/denoiser.onnx",
    } <= names
    assert not any("__pycache__" in n for n in names)


def test_install_enable_disable(run_bpy):
    out = run_bpy("machinery", "registration")
    assert {
        "generate",
        "cancel",
        "use_take",
        "resample_take",
        "listen_take",
        "remove_take",
        "add_head",
        "backend_start",
        "backend_stop",
        "backend_check",
    } <= set(out["ops"])
    assert out["scene_prop"] and out["panels"] == ["THUNDER_PT_view3d", "THUNDER_PT_sequencer", "THUNDER_UL_takes"]
    assert out["prefs"] == {"backend_url": "http://127.0.0.1:8765", "auto_start": True, "device": "auto"}
    assert out["after_disable"]["scene_prop"] is False and out["after_disable"]["panels"] == []
    assert out["reenabled"]


def test_worker_queue_and_main_thread(run_bpy):
    out = run_bpy("machinery", "jobs_flow")
    assert out["ok_state"] == "done" and out["ok_message"] == "applied" and out["answer"] == 42
    assert out["work_thread_is_main"] is False and out["apply_thread_is_main"] is True
    assert out["running_during"] is True and out["timer_idle"] is True and out["timer_running"] is True
    assert out["cancel_state"] == "cancelled" and out["cancel_applied"] is False
    assert out["cancel_greyed"].endswith("poll() nothing is running")  # the greyed button says why
    assert out["generate_greyed"].endswith("THUNDER is busy: wait for the running job, or Cancel it")
    assert out["error_state"] == "failed" and "nope" in out["error_message"]
    assert out["apply_error_state"] == "failed"
    assert out["load_state"] == "cancelled" and out["load_applied"] is False


def test_panel_and_preferences_draw(run_bpy):
    out = run_bpy("machinery", "panel_draw")
    panel = [tuple(x) for x in out["panel"]]
    for item in [
        ("prop_search", "strip"),
        ("prop", "rig"),
        ("prop", "seed"),
        ("prop", "takes_count"),
        ("prop", "guidance"),
        ("prop", "preset"),
        ("operator", "thunder.generate"),
        ("template_list", "takes"),
        ("operator", "thunder.resample_take"),
        ("operator", "thunder.listen_take"),
        ("operator", "thunder.add_head"),
        ("operator", "thunder.backend_start"),
    ]:
        assert item in panel, item
    assert {x[1] for x in out["prefs"] if x[0] == "prop"} == {
        "backend_url",
        "token",
        "token_file",
        "auto_start",
        "python",
        "bundle",
        "device",
        "flame_dir",
    }


def test_wheel_pins_equal_the_tested_requirements():
    """The zips run the versions the test suite runs (requirements.txt), one source for both;
    only the documented per-platform overrides (Intel Macs' onnxruntime) differ."""
    from build_extension import ROOT, platform_names, requirements, wheels_config

    pinned = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==")
            pinned[name.lower().replace("-", "_")] = version.strip()
    for req in wheels_config()["requirements"]:
        name, version = req.split("==")
        assert pinned.get(name.lower().replace("-", "_")) == version, req
    assert set(platform_names()) == {"linux-x64", "windows-x64", "macos-arm64", "macos-x64"}
    assert "onnxruntime==1.23.2" in requirements("macos-x64")
