"""Shared fixtures: small real data built once per session (the demo shop, a Last.fm slice), a real
Chroma store with the real embedding model, and a built index."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from evals.app_process import AppProcess, free_port, stop_process  # noqa: F401  (used by test modules)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("FUSIONREC_SHARED_DATA", ROOT.parent / "shared" / "data"))
LASTFM = SHARED_DATA / "lastfm-hetrec2011"
# One generous bound for every test call into a real model (local llama.cpp or a loopback server): on a
# busy 2-core machine a 135M model's answer can take many times its usual 2-3 s.
LLM_TIMEOUT_S = float(os.environ.get("FUSIONREC_TEST_LLM_TIMEOUT_S", "180"))


@pytest.fixture(scope="session")
def demo_dataset():
    from loaders.demo import make_demo

    return make_demo(seed=7)


@pytest.fixture(scope="session")
def demo_stores(demo_dataset):
    from catalog.stores import build_stores

    return build_stores(demo_dataset)


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("emb") / "embeddings.sqlite"


@pytest.fixture(scope="session")
def demo_settings(tmp_path_factory, embedding_cache):
    from config.settings import Settings

    home = tmp_path_factory.mktemp("home")
    shutil.copy(embedding_cache, home / "embeddings.sqlite") if embedding_cache.exists() else None
    return Settings(home=home, data="demo")


@pytest.fixture(scope="session")
def demo_index(demo_settings, demo_dataset):
    from indexing.build import build_index

    return build_index(demo_settings, progress=False, dataset=demo_dataset)


@pytest.fixture(scope="session")
def recommender(demo_settings, demo_index, demo_dataset):
    from indexing.build import load_recommender

    return load_recommender(demo_settings, dataset=demo_dataset)


@pytest.fixture(scope="session")
def lastfm_slice(tmp_path_factory) -> Path:
    """The first 60 users of the real Last.fm files (all files, same format and encodings)."""
    if not LASTFM.is_dir():
        pytest.fail(f"the shared Last.fm data is missing at {LASTFM} (set FUSIONREC_SHARED_DATA)")
    out = tmp_path_factory.mktemp("lastfm")
    keep_users: set[bytes] = set()
    lines = (LASTFM / "user_artists.dat").read_bytes().split(b"\n")
    for line in lines[1:]:
        if line.strip():
            keep_users.add(line.split(b"\t")[0])
            if len(keep_users) >= 60:
                break
    for name in ("user_artists.dat", "user_taggedartists.dat", "user_friends.dat"):
        rows = (LASTFM / name).read_bytes().split(b"\n")
        kept = [rows[0]] + [r for r in rows[1:] if r.strip() and r.split(b"\t")[0] in keep_users
                            and (name != "user_friends.dat" or r.split(b"\t")[1].strip() in keep_users)]
        (out / name).write_bytes(b"\n".join(kept) + b"\n")
    for name in ("artists.dat", "tags.dat"):
        shutil.copy(LASTFM / name, out / name)
    return out


class AppServer(AppProcess):
    """A real `python app.py` process on 127.0.0.1 (uvicorn + FastAPI + Gradio) with the given LLM backend."""

    def __init__(self, home: Path, llm: str = "off", extra_env: dict[str, str] | None = None):
        super().__init__(home, {"FUSIONREC_LLM__BACKEND": llm, **(extra_env or {})}, ready_timeout_s=180)


@pytest.fixture(scope="session")
def app_home(demo_settings, demo_index) -> Path:
    """A state folder with the demo index built (shared by the app processes of the test session)."""
    return demo_settings.home


@pytest.fixture(scope="session")
def app_server(app_home):
    """The app with the LLM off (fast): for API and UI behaviour that does not need a model."""
    server = AppServer(app_home, llm="off")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app_server_llm(app_home):
    """The app with the default local model (SmolLM2-135M through llama.cpp); a blend weight above 0, so the
    rerank is called (at weight 0, calibrated or not, it is skipped)."""
    server = AppServer(app_home, llm="local", extra_env={"FUSIONREC_LLM__BLEND_WEIGHT": "0.5"})
    yield server
    server.stop()
