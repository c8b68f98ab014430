"""Fixtures for the data sources: the real data samples in ``tests/data``, a clean openml client
config, and a loopback OpenML server that answers the API's URLs from the cache sample."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# Real data copied into the repository (see tests/data/README.md), so a clone with nothing beside it
# runs every data-source test; RFMBENCH_TEST_SAMPLES points at another copy of the same layout.
SAMPLES = Path(
    os.environ.get("RFMBENCH_TEST_SAMPLES") or Path(__file__).resolve().parents[1] / "data"
)
OPENML_SAMPLE = SAMPLES / "openml-cache-sample"
UCI_SAMPLE = SAMPLES / "uci121"
TEST_SERVER = "https://test.openml.org/api/v1/xml"
SAMPLE_FILES = OPENML_SAMPLE / "org" / "openml" / "test"


def _require(path: Path) -> Path:
    if not path.is_dir():
        pytest.fail(f"test data {path} is missing: it is part of the repository")
    return path


@pytest.fixture
def uci_sample() -> Path:
    return _require(UCI_SAMPLE)


@pytest.fixture
def openml_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The ``openml`` module's config, restored after the test; our env variables cleared."""
    import openml

    config = openml.config
    saved = (
        config.server,
        config._root_cache_directory,
        config.retry_policy,
        config.connection_n_retries,
        config.apikey,
    )
    monkeypatch.delenv("RFMBENCH_OPENML_SERVER", raising=False)
    monkeypatch.delenv("RFMBENCH_CACHE_DIR", raising=False)
    yield config
    config.server = saved[0]
    config.set_root_cache_directory(saved[1])
    config.set_retry_policy(saved[2], saved[3])
    config.apikey = saved[4]


@pytest.fixture
def sample_cache(tmp_path: Path) -> Path:
    """A cache root whose openml client cache is a writable copy of the shared sample."""
    _require(OPENML_SAMPLE)
    root = tmp_path / "cache"
    shutil.copytree(OPENML_SAMPLE / "org", root / "openml-client" / "org")
    for path in (root / "openml-client").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LoopbackOpenML:
    """A tiny OpenML API on 127.0.0.1 serving task 1882 / dataset 2 from the shared sample."""

    url: str = ""
    requests: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1/xml"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# A benchmark suite of two tasks: 1882 (anneal, served above) and 9999, too big for the filters.
STUDY_XML = """<oml:study xmlns:oml="http://openml.org/openml">
<oml:id>99</oml:id><oml:alias>loopback</oml:alias><oml:main_entity_type>task</oml:main_entity_type>
<oml:name>Loopback suite</oml:name><oml:description>two tasks</oml:description>
<oml:status>active</oml:status><oml:creation_date>2019-01-01T00:00:00</oml:creation_date>
<oml:creator>1</oml:creator>
<oml:data><oml:data_id>2</oml:data_id><oml:data_id>3</oml:data_id></oml:data>
<oml:tasks><oml:task_id>1882</oml:task_id><oml:task_id>9999</oml:task_id></oml:tasks>
</oml:study>"""
TASK_LIST_XML = """<oml:tasks xmlns:oml="http://openml.org/openml">
<oml:task><oml:task_id>1882</oml:task_id><oml:task_type_id>1</oml:task_type_id><oml:did>2</oml:did>
<oml:name>anneal</oml:name><oml:task_type>Supervised Classification</oml:task_type>
<oml:status>active</oml:status><oml:input name="estimation_procedure">3</oml:input>
<oml:input name="target_feature">class</oml:input>
<oml:quality name="NumberOfInstances">898.0</oml:quality>
<oml:quality name="NumberOfFeatures">39.0</oml:quality>
<oml:quality name="NumberOfClasses">6.0</oml:quality></oml:task>
<oml:task><oml:task_id>9999</oml:task_id><oml:task_type_id>1</oml:task_type_id><oml:did>3</oml:did>
<oml:name>huge</oml:name><oml:task_type>Supervised Classification</oml:task_type>
<oml:status>active</oml:status><oml:input name="estimation_procedure">3</oml:input>
<oml:quality name="NumberOfInstances">1000000.0</oml:quality>
<oml:quality name="NumberOfFeatures">11.0</oml:quality>
<oml:quality name="NumberOfClasses">2.0</oml:quality></oml:task>
</oml:tasks>"""
PROCEDURES_XML = """<oml:estimationprocedures xmlns:oml="http://openml.org/openml">
<oml:estimationprocedure><oml:id>3</oml:id><oml:ttid>1</oml:ttid>
<oml:name>10-fold Crossvalidation</oml:name><oml:type>crossvalidation</oml:type>
</oml:estimationprocedure><oml:estimationprocedure><oml:id>7</oml:id><oml:ttid>2</oml:ttid>
<oml:name>10-fold Crossvalidation</oml:name><oml:type>crossvalidation</oml:type>
</oml:estimationprocedure></oml:estimationprocedures>"""  # two: the client expects a list


def _routes(base: str) -> dict[str, tuple[bytes, str]]:
    """URL path -> (body, content type); absolute URLs in the XML rewritten to ``base``."""
    files = SAMPLE_FILES
    arff = (files / "datasets/2/dataset.arff").read_bytes()
    splits = (files / "tasks/1882/datasplits.arff").read_bytes()
    description = (files / "datasets/2/description.xml").read_text()
    data_url = f"{base}/data/download/1666876/phpFsFYVN"
    description = re.sub(r"<oml:url>[^<]*</oml:url>", f"<oml:url>{data_url}</oml:url>", description)
    md5 = hashlib.md5(arff).hexdigest()  # noqa: S324 - OpenML's own checksum
    assert f"<oml:md5_checksum>{md5}</oml:md5_checksum>" in description
    task = (files / "tasks/1882/task.xml").read_text()
    splits_url = f"{base}/api_splits/get/1882/Task_1882_splits.arff"
    task = re.sub(
        r"<oml:data_splits_url>[^<]*</oml:data_splits_url>",
        f"<oml:data_splits_url>{splits_url}</oml:data_splits_url>",
        task,
    )
    xml, text = "text/xml; charset=utf-8", "text/plain; charset=utf-8"
    return {
        "/api/v1/xml/study/99": (STUDY_XML.encode(), xml),
        "/api/v1/xml/task/list": (TASK_LIST_XML.encode(), xml),  # any filters after it
        "/api/v1/xml/estimationprocedure/list": (PROCEDURES_XML.encode(), xml),
        "/api/v1/xml/task/1882": (task.encode(), xml),
        "/api/v1/xml/data/2": (description.encode(), xml),
        "/api/v1/xml/data/features/2": ((files / "datasets/2/features.xml").read_bytes(), xml),
        "/api/v1/xml/data/qualities/2": ((files / "datasets/2/qualities.xml").read_bytes(), xml),
        "/data/download/1666876/phpFsFYVN": (arff, text),
        "/api_splits/get/1882/Task_1882_splits.arff": (splits, text),
    }


@pytest.fixture
def openml_server() -> Iterator[LoopbackOpenML]:
    """Start the loopback OpenML server in a thread; stopped after the test (or by the test)."""
    _require(OPENML_SAMPLE)
    state = LoopbackOpenML()
    routes: dict[str, tuple[bytes, str]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            state.requests.append(path)
            if path.startswith("/api/v1/xml/task/list/"):
                path = "/api/v1/xml/task/list"
            body, kind = routes.get(path, (b"not found", "text/plain"))
            self.send_response(200 if path in routes else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.server = server
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    routes.update(_routes(state.url))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    state.stop()
