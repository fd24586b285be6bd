"""tests/head uses the session head_dir from tests/conftest.py."""
