"""The studio's server: its guard (token, Host, confined files, POST only) and each action's effect on disk.

Requests go through Starlette's TestClient (the whole ASGI stack, no socket); the run is a preview
run of the example story, so no model is needed.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the studio extra is not installed (pip install 'ipprompt[studio]')")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from starlette.testclient import TestClient  # noqa: E402

from ipprompt.studio.actions import Studio  # noqa: E402
from ipprompt.studio.app import create_app  # noqa: E402
from ipprompt.studio.security import Guard, allowed_hosts, confined_file  # noqa: E402
from studio_helpers import OPTIONS, changed_lines, comments, make_run, manifest, panel  # noqa: E402


@pytest.fixture()
def run_dir(example_copy: Path) -> Path:
    return make_run(example_copy, search="exhaustive")


@pytest.fixture()
def studio(run_dir: Path, example_copy: Path):
    s = Studio(run_dir, example_copy, run_options={**OPTIONS, "search": "exhaustive"})
    yield s
    s.close()


@pytest.fixture()
def guard() -> Guard:
    g = Guard()
    g.hosts = {"testserver"}
    return g


@pytest.fixture()
def client(studio: Studio, guard: Guard):
    with TestClient(create_app(studio, guard)) as c:
        c.headers["X-Studio-Token"] = guard.token
        yield c


def bare(studio: Studio, guard: Guard) -> TestClient:
    """A client that sends no token unless told to."""
    return TestClient(create_app(studio, guard))


# ---------------------------------------------------------------------------------------- guard


def test_every_request_needs_the_token(studio: Studio, guard: Guard) -> None:
    c = bare(studio, guard)
    assert c.get("/").status_code == 403
    assert c.get("/files/panels/01.png").status_code == 403
    assert c.get("/events").status_code == 403
    assert c.get("/?token=wrong").status_code == 403
    assert c.post("/api/run", json={}).status_code == 403
    page = c.get(f"/?token={guard.token}")
    assert page.status_code == 200 and "Studio" in page.text
    # The tokened page sets a cookie, Jupyter-style; later GETs (images, events) ride on it.
    assert guard.cookie_name in c.cookies
    assert c.get("/files/panels/01.png").status_code == 200
    # ...but a change needs the token itself: a cookie alone is what a cross-site form sends.
    assert c.post("/api/pick", json={"panel": 1, "candidate": 0}).status_code == 403
    assert not panel(studio.root, 1).get("picked_by") == "author"


def test_a_foreign_host_header_is_refused(client: TestClient, guard: Guard) -> None:
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.nip.io", ""):
        response = client.get(f"/?token={guard.token}", headers={"Host": host})
        assert response.status_code in (400, 403), host
    assert client.get(f"/?token={guard.token}").status_code == 200


def test_allowed_hosts_are_the_bound_one_and_loopback_names() -> None:
    assert allowed_hosts("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    assert allowed_hosts("192.168.1.5", 9000) == {"192.168.1.5:9000"}


def test_only_the_run_folders_own_files_are_served(client: TestClient, run_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (run_dir / "out-link.png").symlink_to(secret)
    (run_dir / "panels" / "in-link.png").symlink_to(run_dir / "panels" / "01.png")
    (run_dir / "linked-dir").symlink_to(tmp_path, target_is_directory=True)
    assert client.get("/files/panels/01.png").status_code == 200
    for path in (
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/panels/%2e%2e/%2e%2e/secret.txt",
        "/files/panels/..%2F..%2Fsecret.txt",
        "/files/out-link.png",
        "/files/panels/in-link.png",
        "/files/linked-dir/secret.txt",
        "/files/.manifest.lock",
        "/files//etc/passwd",
        "/files/panels",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "do not serve" not in response.text
    assert confined_file(run_dir, "../secret.txt") is None
    assert confined_file(run_dir, str(secret)) is None
    assert confined_file(run_dir, "panels/01.png") == (run_dir / "panels" / "01.png").resolve()


def test_a_state_change_by_get_is_refused(client: TestClient, guard: Guard, run_dir: Path) -> None:
    before = (run_dir / "manifest.json").read_bytes()
    for route in ("/api/pick?panel=1&candidate=0", "/api/run", "/api/reroll?panel=1", "/api/edit", "/api/export/pdf", "/api/cancel?job=1"):
        assert client.get(f"{route}{'&' if '?' in route else '?'}token={guard.token}").status_code == 405, route
    assert (run_dir / "manifest.json").read_bytes() == before


# ---------------------------------------------------------------------------------------- actions


def test_pick_is_recorded_in_the_manifest_and_shown(client: TestClient, run_dir: Path) -> None:
    other = next(c["index"] for c in panel(run_dir, 2)["candidates"] if not c["chosen"])
    response = client.post("/api/pick", json={"panel": 2, "candidate": other})
    assert response.status_code == 200, response.text
    p = panel(run_dir, 2)
    assert p["chosen"] == other and p["picked_by"] == "author"
    assert (run_dir / "panels" / "02.png").read_bytes() == (run_dir / f"panels/02/cand-{other}.png").read_bytes()
    page = client.get("/").text
    assert re.search(rf'class="candidate chosen"[^>]*id="panel-2-candidate-{other}"', page)
    assert "storyboard.html" in os.listdir(run_dir)  # re-rendered, as `story pick` does


def test_a_previewed_pick_is_queued_and_finished(example_copy: Path) -> None:
    run_dir = make_run(example_copy, panels="1")  # pruned: only the best candidate is finished
    studio = Studio(run_dir, example_copy, run_options=OPTIONS)
    try:
        pruned = next(c["index"] for c in panel(run_dir, 1)["candidates"] if c["pruned"])
        outcome = studio.pick(1, pruned)
        assert outcome.job is not None and panel(run_dir, 1)["pick_to_finish"] == pruned
        assert studio.queue.wait_idle(120)
        assert outcome.job.state == "done", outcome.job.message
        p = panel(run_dir, 1)
        assert p["chosen"] == pruned and p["picked_by"] == "author" and p["pick_to_finish"] is None
    finally:
        studio.close()


def test_caption_edit_lands_in_the_toml_keeping_comments(client: TestClient, run_dir: Path, example_copy: Path) -> None:
    original = example_copy.read_text(encoding="utf-8")
    image = (run_dir / "panels" / "02.png").read_bytes()
    response = client.post("/api/edit", json={"panel": 2, "caption": "A brand-new caption, with 'quotes' & <b>tags</b>."})
    assert response.status_code == 200, response.text
    assert response.json()["job"] is None  # words only: nothing regenerated
    edited = example_copy.read_text(encoding="utf-8")
    removed, added = changed_lines(original, edited)
    assert removed == ['caption = "The old lighthouse stood dark. Its lamp had gone out."']
    assert added == ['caption = "A brand-new caption, with \'quotes\' & <b>tags</b>."']
    assert comments(edited) == comments(original) and len(comments(original)) > 20
    backups = list(example_copy.parent.glob("lighthouse.toml.bak-*"))
    assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == original
    assert panel(run_dir, 2)["caption"] == "A brand-new caption, with 'quotes' & <b>tags</b>."
    assert (run_dir / "panels" / "02.png").read_bytes() == image
    page = client.get("/").text
    assert "A brand-new caption, with &#39;quotes&#39; &amp; &lt;b&gt;tags&lt;/b&gt;." in page


def test_dialogue_edit_and_an_invalid_speaker(client: TestClient, run_dir: Path, example_copy: Path) -> None:
    lines = [{"speaker": "keeper", "text": "Who goes there?"}, {"speaker": "mira", "text": "Only me!"}]
    assert client.post("/api/edit", json={"panel": 3, "dialogue": lines}).status_code == 200
    assert [d["text"] for d in panel(run_dir, 3)["dialogue"]] == ["Who goes there?", "Only me!"]
    assert 'dialogue = [{speaker = "keeper", text = "Who goes there?"}' in example_copy.read_text(encoding="utf-8")
    before = example_copy.read_text(encoding="utf-8")
    bad = client.post("/api/edit", json={"panel": 3, "dialogue": [{"speaker": "nobody", "text": "hi"}]})
    assert bad.status_code == 400 and "nobody" in bad.json()["error"]
    assert example_copy.read_text(encoding="utf-8") == before
    assert len(list(example_copy.parent.glob("lighthouse.toml.bak-*"))) == 1


def test_reroll_keeps_the_old_image_in_history(client: TestClient, studio: Studio, run_dir: Path) -> None:
    old = (run_dir / "panels" / "01.png").read_bytes()
    response = client.post("/api/reroll", json={"panel": 1})
    assert response.status_code == 200 and response.json()["job"]["state"] in ("queued", "running")
    assert studio.queue.wait_idle(120)
    jobs = client.get("/api/jobs").json()
    assert jobs[-1]["state"] == "done", jobs
    p = panel(run_dir, 1)
    assert p["reroll"] == 1 and p["status"] == "done"
    history = sorted((run_dir / "history").glob("01-*.png"))
    assert any(h.read_bytes() == old for h in history)


def test_prompt_edit_queues_the_panel_and_restore_brings_it_back(client: TestClient, studio: Studio, run_dir: Path) -> None:
    old_key, old = panel(run_dir, 3)["key"], (run_dir / "panels" / "03.png").read_bytes()
    response = client.post("/api/edit", json={"panel": 3, "prompt": "a tiny green boat on a calm sea"})
    assert response.json()["job"]["kind"] == "regenerate"
    assert studio.queue.wait_idle(120)
    assert panel(run_dir, 3)["key"] != old_key and panel(run_dir, 3)["prompt"] == "a tiny green boat on a calm sea"
    name = next(h.name for h in (run_dir / "history").glob("03-*.png") if h.read_bytes() == old)
    assert client.post("/api/restore", json={"panel": 3, "name": name}).status_code == 200
    assert (run_dir / "panels" / "03.png").read_bytes() == old
    assert panel(run_dir, 3)["picked_from_history"] == name


def test_a_queued_job_can_be_cancelled(client: TestClient, studio: Studio, run_dir: Path) -> None:
    first = client.post("/api/run", json={}).json()["job"]
    second = client.post("/api/reroll", json={"panel": 2}).json()["job"]
    cancelled = client.post("/api/cancel", json={"job": second["id"]}).json()["job"]
    assert cancelled["state"] in ("cancelled", "running")  # the worker may have taken it already
    assert studio.queue.wait_idle(120)
    states = {j["id"]: j["state"] for j in client.get("/api/jobs").json()}
    assert states[first["id"]] == "done"
    if cancelled["state"] == "cancelled":
        assert states[second["id"]] == "cancelled" and panel(run_dir, 2)["reroll"] == 0


def test_export_is_a_download(client: TestClient) -> None:
    pdf = client.post("/api/export/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert "attachment" in pdf.headers["content-disposition"] and ".pdf" in pdf.headers["content-disposition"]
    cbz = client.post("/api/export/cbz")
    assert cbz.status_code == 200 and cbz.content[:2] == b"PK"
    assert client.post("/api/export/docx").status_code == 400


def test_progress_events_are_streamed() -> None:
    from ipprompt.studio.events import EventHub, EventProgress, JobCancelled, stream

    hub = EventHub()
    cancel = {"now": False}
    progress = EventProgress(hub, 7, lambda: cancel["now"])
    progress.start_run(2)
    progress.start_panel(1, "a lighthouse")
    progress.candidates_added(3, 0)
    progress.candidate_done()
    progress.end_panel(False)
    cancel["now"] = True
    with pytest.raises(JobCancelled):
        progress.start_panel(2, "the sea")

    async def read() -> list[str]:
        chunks = []

        async def gone() -> bool:
            return len(chunks) > 5

        async for chunk in stream(hub, 0, gone, poll=0.01):
            chunks.append(chunk)
        return chunks

    chunks = asyncio.run(read())
    text = "".join(chunks)
    assert "event: panel\n" in text and '"description":"a lighthouse"' in text and '"job":7' in text
    assert "event: panel_done\n" in text and '"panels_done":1' in text


def test_a_story_gives_its_run_folder_created_if_new(example_copy: Path, tmp_path: Path) -> None:
    from ipprompt.studio.server import resolve_target

    run_dir, story = resolve_target(example_copy, cwd=tmp_path)
    assert run_dir == tmp_path / "runs" / "lighthouse" and story == example_copy
    s = Studio(run_dir, story, run_options=OPTIONS)
    try:
        s.ensure_manifest()
        m = manifest(run_dir)
        assert len(m["panels"]) == 10 and all(p["status"] == "pending" for p in m["panels"])
        assert m["panels"][1]["caption"] == "The old lighthouse stood dark. Its lamp had gone out."
        assert m["story"]["path"] == str(example_copy)  # so `story run` of this story accepts the folder
        job = s.reroll(4).job  # a panel never made is made, not rerolled
        assert job is not None and job.kind == "run" and s.queue.wait_idle(120) and job.state == "done", job and job.message
        assert panel(run_dir, 4)["status"] == "done" and panel(run_dir, 4)["reroll"] == 0
        assert panel(run_dir, 3)["status"] == "pending"
    finally:
        s.close()


# ---------------------------------------------------------------------------------------- the command


def test_cli_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch, run_dir: Path) -> None:
    from typer.testing import CliRunner

    from ipprompt.cli import app

    for name in ("starlette", "uvicorn", "tomlkit"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    result = CliRunner().invoke(app, ["studio", str(run_dir), "--no-browser"])
    assert result.exit_code == 2
    assert 'pip install "ipprompt[studio]"' in result.output and "Traceback" not in result.output


def test_cli_prints_a_tokened_url_and_serves_the_page(run_dir: Path) -> None:
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "ipprompt", "studio", str(run_dir), "--no-browser", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "300"},
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            found = re.search(r"(http://127\.0\.0\.1:(\d+)/\?token=[\w%-]+)", line)
            if found:
                url = found.group(1)
        assert url is not None and not url.endswith(":0/"), "no URL printed"
        port = int(re.search(r":(\d+)/", url).group(1))  # type: ignore[union-attr]
        assert port != 0
        for _ in range(50):
            try:
                page = httpx.get(url, timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert page.status_code == 200 and "The Lighthouse Keeper" in page.text
        assert httpx.get(url.split("?")[0], timeout=5).status_code == 403
        assert httpx.get(url.replace("127.0.0.1", "localhost"), timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_running_job_stops_at_its_next_report_when_cancelled(tmp_path: Path) -> None:
    from ipprompt.studio.events import EventHub
    from ipprompt.studio.jobs import JobQueue

    hub = EventHub()
    queue = JobQueue(hub, tmp_path)
    started, reports = [], []

    def work(progress, device):  # type: ignore[no-untyped-def]
        progress.start_run(1)
        started.append(device)
        while len(reports) < 10_000:
            reports.append(1)
            progress.step()
            time.sleep(0.001)
        return "never cancelled"

    try:
        job = queue.submit("run", "a long run", work)
        deadline = time.monotonic() + 30
        while not started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queue.get(job.id).state == "running"  # type: ignore[union-attr]
        queue.cancel(job.id)
        assert queue.wait_idle(30)
        assert job.state == "cancelled" and len(reports) < 10_000
        assert [e[2]["state"] for e in hub.since(0) if e[1] == "job"][-1] == "cancelled"
    finally:
        queue.close()


def test_without_run_options_a_run_folder_keeps_its_own_settings(run_dir: Path, example_copy: Path) -> None:
    """`ipprompt studio runs/x` passes no model options: a preview run is rerolled as a preview."""
    s = Studio(run_dir, example_copy)
    try:
        job = s.reroll(1).job
        assert job is not None and s.queue.wait_idle(120)
        assert job.state == "done", job.message
        p = panel(run_dir, 1)
        assert p["reroll"] == 1 and p["settings"]["backend"] == "preview" and p["settings"]["tile"] == OPTIONS["tile"]
    finally:
        s.close()
