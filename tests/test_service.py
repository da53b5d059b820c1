"""The REST service, run for real under uvicorn on a loopback port and spoken to over HTTP."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from affine import Affine

from deadtree.errors import InputError
from deadtree.pipeline import SegmentOptions, segment_scene
from service.housekeeping import expire_results, recover
from service.jobfiles import JobFiles, new_job_id
from service.errors import ApiError
from service.options import JobOptions
from service.settings import MB, Settings
from service.store import FAILED, JOB, QUEUED, RUNNING, SYNC, JobStore
from tests.geojson_rules import load_rfc7946
from tests.scenes import write_scene
from tests.test_service_harness import ServiceProcess, free_port, make_toy_models, upload, wait_for_job

SERVER_SETTINGS = dict(workers=1, queue_limit=3, retry_after=7, max_upload_mb=2, sync_max_upload_mb=1,
                       max_pixels=1e7, sync_max_pixels=2e5)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return make_toy_models(tmp_path_factory.mktemp("service-models"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):
    root = tmp_path_factory.mktemp("service")
    process = ServiceProcess(root / "data", models_dir, root / "server.log", **SERVER_SETTINGS).start()
    yield process
    process.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http
    assert server.alive(), f"the server died:\n{server.log()}"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("service-scenes")
    paths = {"rgbn": folder / "orthophoto.tif", "rgb": folder / "rgb.tif", "no_crs": folder / "no_crs.tif",
             "wide": folder / "wide.tif", "bomb": folder / "bomb.tif"}
    write_scene(paths["rgbn"])
    write_scene(paths["rgb"], bands=3, seed=1)
    write_scene(paths["no_crs"], crs=None, height=80, width=80)
    write_scene(paths["wide"], height=500, width=500, bands=3, seed=2)
    # A decompression bomb: a few kilobytes whose header claims 200,000 x 200,000 pixels.
    with rasterio.open(paths["bomb"], "w", driver="GTiff", width=200_000, height=200_000, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(0.5, 0, 500000, 0, -0.5, 6700000), tiled=True,
                       blockxsize=2048, blockysize=2048, compress="deflate", sparse_ok=True):
        pass
    data = paths["rgbn"].read_bytes()
    paths["truncated"] = folder / "truncated.tif"
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["garbage"] = folder / "garbage.tif"
    paths["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return paths


# ---------------------------------------------------------------- health, docs


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"].values()) == {"ok"}


def test_openapi_documents_every_endpoint_with_examples(client):
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path, method in [("/v1/segment", "post"), ("/v1/jobs", "post"), ("/v1/jobs/{job_id}", "get"),
                         ("/v1/jobs/{job_id}", "delete"), ("/v1/jobs/{job_id}/result", "get"),
                         ("/v1/models", "get"), ("/healthz", "get"), ("/readyz", "get")]:
        assert method in paths[path], f"{method.upper()} {path} is not documented"
    body = paths["/v1/segment"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and body["properties"]["format"]["enum"] == ["geojson", "gpkg"]
    assert {"413", "422", "503"} <= set(paths["/v1/segment"]["post"]["responses"])
    assert doc["components"]["schemas"]["JobStatus"]["examples"]
    assert "application/geo+json" in paths["/v1/jobs/{job_id}/result"]["get"]["responses"]["200"]["content"]


def test_models_lists_shipped_models_with_cards(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(models) == {"toy-rgb", "toy-rgbn"}
    assert models["toy-rgbn"]["bands"] == ["R", "G", "B", "NIR"]
    assert models["toy-rgbn"]["card"].startswith("# toy-rgbn")
    assert models["toy-rgb"]["card"] is None


# ---------------------------------------------------------------- results


def test_segment_answers_the_same_polygons_as_the_pipeline(client, scenes, models_dir, tmp_path, monkeypatch):
    answer = client.post("/v1/segment", **upload(scenes["rgbn"], threshold=0.4, min_area=2.0))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/geo+json"
    served_path = tmp_path / "served.geojson"
    served_path.write_bytes(answer.content)
    served = load_rfc7946(served_path)

    monkeypatch.setenv("DEADTREE_MODELS", str(models_dir))
    expected_path = tmp_path / "expected.geojson"
    segment_scene(scenes["rgbn"], SegmentOptions(output=expected_path, threshold=0.4, min_area=2.0))
    expected = json.loads(expected_path.read_text())
    assert served["features"], "the toy model should find the discs"
    assert served["features"] == expected["features"]
    assert served["deadtree"]["source"] == scenes["rgbn"].name  # the upload's name, not the server's file
    assert int(answer.headers["x-deadtree-polygons"]) == len(expected["features"])


def test_precision_and_flips_reach_the_pipeline(client, scenes, models_dir, tmp_path, monkeypatch):
    options = JobOptions.from_form({"precision": "FP32", "flips": "yes"})
    segment = options.segment_options(tmp_path / "a.geojson", None, "cpu", 1e7)
    assert (segment.precision, segment.flips) == ("fp32", True)
    assert JobOptions.from_form({}).segment_options(tmp_path / "a.geojson", None, "cpu", 1e7).flips is False
    scaled = JobOptions.from_form({"scales": "1.5"})
    assert scaled.segment_options(tmp_path / "a.geojson", None, "cpu", 1e7).scales == (1.5,)
    assert JobOptions.from_dict(scaled.to_dict()) == scaled  # as queued jobs are stored and read back
    for bad, words in (("0.5", "magnifications above 1"), ("big", "as numbers")):
        with pytest.raises(ApiError, match=words) as caught:
            JobOptions.from_form({"scales": bad})
        assert caught.value.status == 422
    options = JobOptions.from_form({"min_peak": "0.9"})
    assert options.segment_options(tmp_path / "a.geojson", None, "cpu", 1e7).min_peak == 0.9
    assert JobOptions.from_dict(options.to_dict()) == options
    answer = client.post("/v1/segment", **upload(scenes["rgbn"], min_peak="0.9"))
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.content)["deadtree"]["min_peak"] == 0.9

    options = JobOptions.from_form({"ensemble": "toy-rgb, toy-rgbn"})
    assert JobOptions.from_dict(options.to_dict()) == options and options.ensemble == ("toy-rgb", "toy-rgbn")
    answer = client.post("/v1/segment", **upload(scenes["rgbn"], threshold=0.4, ensemble="toy-rgb"))
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.content)["deadtree"]["ensemble"] == ["toy-rgb"]

    answer = client.post("/v1/segment", **upload(scenes["rgbn"], threshold=0.4, flips="true", precision="fp32"))
    assert answer.status_code == 200, answer.text
    monkeypatch.setenv("DEADTREE_MODELS", str(models_dir))
    path = tmp_path / "flips.geojson"
    segment_scene(scenes["rgbn"], SegmentOptions(output=path, threshold=0.4, flips=True, precision="fp32"))
    assert json.loads(answer.content)["features"] == json.loads(path.read_text())["features"]


def test_a_band_left_out_with_a_dash_picks_the_model_for_the_rest(client, scenes):
    answer = client.post("/v1/segment", **upload(scenes["rgbn"], bands="R,G,B,-"))
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.content)["deadtree"]["model"] == "toy-rgb"  # NIR left out: the RGB default
    assert JobOptions.from_form({"bands": "R,G,B,-"}).bands == ("R", "G", "B", "-")


def test_job_lifecycle_with_geopackage(client, scenes, server):
    submitted = client.post("/v1/jobs", **upload(scenes["rgbn"], name="../../etc/passwd", format="gpkg"))
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    assert submitted.headers["location"] == f"/v1/jobs/{job_id}"
    assert submitted.json()["filename"] == "passwd"  # a client's file name is text, never a path

    status = wait_for_job(client, job_id)
    assert status["state"] == "succeeded", status
    assert status["progress"] == 1.0 and status["attempts"] == 1 and status["error"] is None
    assert status["run_seconds"] >= 0 and status["expires_at"] > status["finished_at"]
    assert status["result"]["min_peak"] == 0.0 and status["result"]["faint_dropped"] == 0  # the toy keeps all
    result = client.get(status["result"]["url"])
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/geopackage+sqlite3"
    assert result.content.startswith(b"SQLite format 3")
    folder = server.data_dir / "jobs" / job_id
    assert not (folder / "scene.tif").exists(), "the upload is removed once the job has finished"

    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert client.get(f"/v1/jobs/{job_id}/result").status_code == 404
    assert not folder.exists()


def test_unknown_jobs_are_404_and_bad_ids_422(client):
    missing = client.get(f"/v1/jobs/{new_job_id()}")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert client.delete(f"/v1/jobs/{new_job_id()}").status_code == 404
    assert client.get("/v1/jobs/..%2F..%2Fetc").status_code in (404, 422)
    assert client.get("/v1/jobs/not-an-id/result").status_code == 422


# ---------------------------------------------------------------- bad input: always a 4xx with a human message

BAD_UPLOADS = [
    # (scene key, form fields, endpoint, status, code)
    ("garbage", {}, "/v1/segment", 422, "not_a_geotiff"),
    ("garbage", {}, "/v1/jobs", 422, "not_a_geotiff"),
    ("truncated", {}, "/v1/segment", 422, "truncated_scene"),
    ("truncated", {}, "/v1/jobs", 422, "truncated_scene"),
    ("no_crs", {}, "/v1/jobs", 422, "invalid_scene"),
    ("bomb", {}, "/v1/segment", 413, "raster_too_large"),
    ("bomb", {}, "/v1/jobs", 413, "raster_too_large"),
    ("wide", {}, "/v1/segment", 413, "use_jobs"),
    ("rgbn", {"model": "no-such-model"}, "/v1/segment", 422, "invalid_model"),
    ("rgbn", {"model": "/etc/hosts.onnx"}, "/v1/jobs", 422, "invalid_model"),
    ("rgb", {"model": "toy-rgbn"}, "/v1/segment", 422, "invalid_model"),
    ("rgbn", {"bands": "R,G,B,X"}, "/v1/jobs", 422, "invalid_option"),
    ("rgbn", {"threshold": "1.5"}, "/v1/segment", 422, "invalid_option"),
    ("rgbn", {"min_area": "nan"}, "/v1/segment", 422, "invalid_option"),
    ("rgbn", {"min_peak": "1.5"}, "/v1/segment", 422, "invalid_option"),
    ("rgbn", {"format": "shapefile"}, "/v1/jobs", 422, "invalid_option"),
    ("rgbn", {"colour": "blue"}, "/v1/jobs", 422, "invalid_option"),
    ("rgbn", {"precision": "int4"}, "/v1/segment", 422, "invalid_option"),
    ("rgbn", {"flips": "maybe"}, "/v1/segment", 422, "invalid_option"),
    ("rgbn", {"precision": "int8"}, "/v1/jobs", 422, "invalid_model"),  # the toy model has no int8 variant
    ("rgbn", {"ensemble": "no-such-model"}, "/v1/segment", 422, "invalid_model"),
    ("rgb", {"model": "toy-rgb", "ensemble": "toy-rgbn"}, "/v1/segment", 422, "invalid_model"),  # needs NIR
    ("rgbn", {"ensemble": "toy-rgb", "translator": "x"}, "/v1/jobs", 422, "invalid_option"),
]


@pytest.mark.parametrize("scene,fields,endpoint,status,code", BAD_UPLOADS,
                         ids=[f"{c[0]}-{c[4]}-{c[2].rsplit('/', 1)[-1]}" for c in BAD_UPLOADS])
def test_bad_uploads_get_a_4xx_json_error(client, scenes, scene, fields, endpoint, status, code):
    answer = client.post(endpoint, **upload(scenes[scene], **fields))
    assert_error(answer, status, code)
    if scene in ("bomb", "truncated", "garbage"):
        assert scenes[scene].name in answer.json()["detail"] and "/" not in answer.json()["detail"].split(" ")[0]


def test_no_crs_from_the_segment_endpoint_names_the_problem(client, scenes):
    answer = client.post("/v1/segment", **upload(scenes["no_crs"]))
    assert_error(answer, 422, "invalid_scene")
    assert "no_crs.tif has no coordinate reference system" in answer.json()["detail"]


def test_a_missing_band_names_the_form_field_and_the_upload(client, scenes):
    answer = client.post("/v1/segment", **upload(scenes["rgb"], model="toy-rgbn"))
    assert_error(answer, 422, "invalid_model")
    detail = answer.json()["detail"]
    assert detail.startswith(scenes["rgb"].name) and "missing NIR" in detail and "form field bands" in detail


def test_uploads_beyond_the_limits_get_413_while_streaming(client):
    too_big_for_segment = b"\0" * (MB + MB // 2)
    answer = client.post("/v1/segment", files={"file": ("big.tif", too_big_for_segment)})
    assert_error(answer, 413, "upload_too_large")
    assert "/v1/jobs" in answer.json()["detail"]

    def chunks():  # no Content-Length: the limit can only be enforced while the body streams in
        boundary = b"--xyz"
        yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.tif"\r\n\r\n'
        for _ in range(48):
            yield b"\0" * 65536  # 3 MiB in all, over the 2 MiB limit of POST /v1/jobs
        yield b"\r\n" + boundary + b"--\r\n"

    answer = client.post("/v1/jobs", content=chunks(),
                         headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert_error(answer, 413, "upload_too_large")


def test_malformed_requests_get_4xx(client, scenes):
    assert_error(client.post("/v1/segment", json={"file": "x"}), 415, "unsupported_media_type")
    assert_error(client.post("/v1/jobs", data={"model": "toy-rgbn"}, files={"other": ("a", b"")}), 422,
                 "invalid_upload")
    assert_error(client.post("/v1/jobs", files={"file": ("empty.tif", b"")}), 422, "invalid_upload")
    two = [("file", ("a.tif", b"II*\0")), ("file", ("b.tif", b"II*\0"))]
    assert_error(client.post("/v1/jobs", files=two), 422, "invalid_upload")
    cut = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.tif"\r\n\r\nII*\0'
    assert_error(client.post("/v1/jobs", content=cut, headers={"content-type": "multipart/form-data; boundary=xyz"}),
                 400, "malformed_upload")
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(client.put("/v1/models"), 405, "method_not_allowed")


def assert_error(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["detail"] and "\n" not in body["detail"] and "Traceback" not in body["detail"]


# ---------------------------------------------------------------- load


def test_burst_of_concurrent_uploads_gets_results_or_503(client, scenes, server):
    payload = scenes["rgbn"].read_bytes()

    def post(index: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=60) as own:
            return own.post("/v1/segment", files={"file": (f"scene-{index}.tif", payload, "image/tiff")})

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, range(20)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 1
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "7" and answer.json()["code"] == "queue_full"
        else:
            assert answer.json()["features"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    leftovers = [p for p in (server.data_dir / "uploads").iterdir()]
    assert not leftovers, "refused uploads must not stay on disk"


# ---------------------------------------------------------------- restart


def test_restart_in_the_middle_of_a_queue_loses_nothing(tmp_path, models_dir, scenes):
    small, large = scenes["rgbn"], tmp_path / "large.tif"
    write_scene(large, height=600, width=600, seed=3)
    server = ServiceProcess(tmp_path / "data", models_dir, tmp_path / "server.log", workers=1).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            done_before = client.post("/v1/jobs", **upload(small)).json()["id"]
            assert wait_for_job(client, done_before)["state"] == "succeeded"
            queued = [client.post("/v1/jobs", **upload(large, name=f"part-{i}.tif")).json()["id"] for i in range(3)]
            # Kill it hard (as a crash or an OOM kill would) once the first large job runs.
            running = wait_for_job(client, queued[0], states=("running", "succeeded"))
        server.stop(hard=True)
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            finished = [wait_for_job(client, job_id, timeout_s=60) for job_id in queued]
            assert [f["state"] for f in finished] == ["succeeded"] * 3, finished
            if running["state"] == "running":
                assert finished[0]["attempts"] == 2, "the interrupted job was run again"
            assert client.get(f"/v1/jobs/{done_before}/result").status_code == 200
            for status in finished:
                assert client.get(status["result"]["url"]).json()["features"]
    finally:
        server.stop()


# ---------------------------------------------------------------- access, in-process uvicorn


@pytest.fixture
def guarded_server(tmp_path, models_dir, monkeypatch):
    """The app under uvicorn in a thread, with an API key and a CORS origin."""
    import uvicorn

    from service.app import create_app

    monkeypatch.setenv("DEADTREE_MODELS", str(models_dir))
    settings = Settings(data_dir=tmp_path / "data", api_key="s3cret", cors_origins=("https://maps.example.org",))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(timeout=20)


def test_api_key_guards_everything_but_health(guarded_server, scenes):
    with httpx.Client(base_url=guarded_server, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert_error(client.get("/v1/models"), 401, "unauthorized")
        assert_error(client.get("/v1/models", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        assert_error(client.post("/v1/segment", **upload(scenes["rgbn"])), 401, "unauthorized")
        assert_error(client.get(f"/v1/jobs/{new_job_id()}"), 401, "unauthorized")
        assert client.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        answer = client.post("/v1/segment", headers={"X-API-Key": "s3cret"}, **upload(scenes["rgbn"]))
        assert answer.status_code == 200 and answer.json()["features"]
        schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
        assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}


def test_cors_allows_only_configured_origins(guarded_server):
    with httpx.Client(base_url=guarded_server, timeout=30) as client:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
        allowed = client.options("/v1/jobs", headers={"Origin": "https://maps.example.org", **preflight})
        assert allowed.headers.get("access-control-allow-origin") == "https://maps.example.org"
        refused = client.options("/v1/jobs", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in refused.headers


# ---------------------------------------------------------------- store, expiry and settings (no server)


def test_recovery_requeues_running_jobs_drops_sync_and_gives_up_on_repeat_offenders(tmp_path):
    settings = Settings(data_dir=tmp_path, max_attempts=2)
    settings.jobs_dir.mkdir()
    settings.uploads_dir.mkdir()
    store, files = JobStore(settings.database), JobFiles(settings.jobs_dir)
    ids = {}
    for name, kind in [("interrupted", JOB), ("sync", SYNC), ("waiting", JOB)]:
        ids[name] = new_job_id()
        files.folder(ids[name]).mkdir()
        files.scene(ids[name]).write_bytes(b"scene")
        assert store.create(ids[name], kind, {}, f"{name}.tif", queue_limit=10)
    assert store.claim_next().id == ids["interrupted"]
    assert store.claim_next().id == ids["sync"]
    orphan = files.folder(new_job_id())
    orphan.mkdir()
    (settings.uploads_dir / "partial.part").write_bytes(b"x")

    recover(store, files, settings)  # as after a crash

    assert store.get(ids["interrupted"]).state == QUEUED and store.get(ids["waiting"]).state == QUEUED
    assert files.scene(ids["interrupted"]).exists(), "a requeued job keeps its upload"
    assert store.get(ids["sync"]) is None and not files.folder(ids["sync"]).exists()
    assert not orphan.exists() and not any(settings.uploads_dir.iterdir())

    # A scene that crashes the server each time it runs is given up after max_attempts, not run forever.
    assert store.claim_next().id == ids["interrupted"]
    recover(store, files, settings)
    offender = store.get(ids["interrupted"])
    assert offender.state == FAILED and offender.attempts == 2 and offender.error["code"] == "interrupted"
    assert store.get(ids["waiting"]).state == QUEUED
    store.close()


@pytest.fixture
def endless_pool(tmp_path, monkeypatch):
    """A worker pool whose 'segmentation' reports progress until it is interrupted."""
    import service.workers

    def endless_segment(scene_path, options, on_progress, sessions=None, stop=None):
        while True:
            on_progress(0.5)
            time.sleep(0.01)

    monkeypatch.setattr(service.workers, "segment_scene", endless_segment)
    pool, store, files, job_id = pool_with_one_job(tmp_path, RUNNING)
    yield pool, store, files, job_id
    pool.stop()
    store.close()


def pool_with_one_job(folder, until_state: str):
    """A started worker pool with one queued job, once the job has reached `until_state` (or 20 s)."""
    import service.workers

    store, files = JobStore(folder / "jobs.sqlite3"), JobFiles(folder / "jobs")
    pool = service.workers.WorkerPool(store, files, Settings(data_dir=folder))
    job_id = new_job_id()
    files.folder(job_id).mkdir(parents=True)
    files.scene(job_id).write_bytes(b"scene")
    store.create(job_id, JOB, {}, "a.tif", queue_limit=10)
    pool.start()
    deadline = time.monotonic() + 20
    while store.get(job_id).state != until_state and time.monotonic() < deadline:
        time.sleep(0.01)
    return pool, store, files, job_id


def test_a_clean_stop_puts_the_running_job_back_without_counting_the_attempt(endless_pool):
    pool, store, files, job_id = endless_pool
    pool.stop()
    job = store.get(job_id)
    assert job.state == QUEUED and job.attempts == 0 and files.scene(job_id).exists()


def test_deleting_a_running_job_stops_it_and_removes_its_files(endless_pool):
    pool, store, files, job_id = endless_pool
    assert store.delete(job_id).state == RUNNING
    pool.cancel(job_id)
    deadline = time.monotonic() + 20
    while files.folder(job_id).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not files.folder(job_id).exists() and pool.alive()


def test_expired_results_are_forgotten_and_removed(tmp_path):
    store, files = JobStore(tmp_path / "jobs.sqlite3"), JobFiles(tmp_path / "jobs")
    succeeded, failed, running = new_job_id(), new_job_id(), new_job_id()
    for job_id in (succeeded, failed, running):
        files.folder(job_id).mkdir(parents=True)
        files.result(job_id, "geojson").write_text("{}")
        store.create(job_id, JOB, {}, "a.tif", queue_limit=10)
        store.claim_next()
    store.succeed(succeeded, {"polygons": 0})
    store.fail(failed, {"status": 422, "code": "invalid_scene", "detail": "no CRS"})
    later = time.time() + 100
    assert expire_results(store, files, ttl_s=150, now=later) == []
    assert sorted(expire_results(store, files, ttl_s=50, now=later)) == sorted([succeeded, failed])
    assert store.get(succeeded) is None and store.get(failed) is None
    assert not files.folder(succeeded).exists() and not files.folder(failed).exists()
    assert store.get(running).state == RUNNING and files.folder(running).exists(), "running jobs never expire"
    store.close()


def test_queue_limit_is_enforced_by_the_store(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    assert all(store.create(new_job_id(), JOB, {}, "a.tif", queue_limit=2) for _ in range(2))
    assert not store.create(new_job_id(), JOB, {}, "a.tif", queue_limit=2)
    assert store.claim_next().state == RUNNING
    assert store.create(new_job_id(), JOB, {}, "a.tif", queue_limit=2), "running jobs do not count"
    store.close()


def test_settings_come_from_the_environment():
    settings = Settings.from_env({"DEADTREE_DATA_DIR": "/srv/deadtree", "DEADTREE_WORKERS": "2",
                                  "DEADTREE_MAX_UPLOAD_MB": "10", "DEADTREE_CORS_ORIGINS": "https://a.org, https://b.org",
                                  "DEADTREE_RESULT_TTL": "60"})
    assert settings.data_dir == Path("/srv/deadtree") and settings.workers == 2
    assert settings.max_upload_bytes == 10 * MB and settings.result_ttl_s == 60
    assert settings.cors_origins == ("https://a.org", "https://b.org") and settings.api_key is None
    with pytest.raises(InputError, match="DEADTREE_WORKERS"):
        Settings.from_env({"DEADTREE_WORKERS": "many"})
    with pytest.raises(InputError, match="queue_limit"):
        Settings.from_env({"DEADTREE_QUEUE_LIMIT": "0"})


def test_every_setting_is_documented():
    import re

    from service.settings import ENV_SETTINGS

    documented = set(re.findall(r"`(DEADTREE_[A-Z_]+)`", (Path(__file__).parents[1] / "docs" / "service.md").read_text()))
    settings = {f"DEADTREE_{name.upper()}" for name in ENV_SETTINGS}
    assert settings <= documented, f"undocumented: {sorted(settings - documented)}"
    assert documented - settings <= {"DEADTREE_MODELS", "DEADTREE_HOST", "DEADTREE_PORT"}


def test_a_sync_request_whose_client_has_gone_stops_its_job(endless_pool, monkeypatch):
    import asyncio

    from service import api

    pool, store, files, job_id = endless_pool

    class GoneClient:
        async def is_disconnected(self):
            return True

    class Waiting:
        async def is_disconnected(self):
            return False

    monkeypatch.setattr(api, "DISCONNECT_POLL_S", 0.05)

    async def wait(request):
        return await api._finished_or_client_gone(request, asyncio.get_running_loop().create_future())

    assert asyncio.run(wait(GoneClient())) is False
    with pytest.raises(asyncio.TimeoutError):  # a client still there keeps waiting
        asyncio.run(asyncio.wait_for(wait(Waiting()), timeout=0.3))

    class State:
        pass

    state = State()
    state.store, state.files, state.pool = store, files, pool
    api._abandon_sync_job(state, job_id)
    deadline = time.monotonic() + 10
    while files.folder(job_id).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.get(job_id) is None and not files.folder(job_id).exists()


def test_a_full_disk_fails_the_job_with_507_and_readiness_says_so(tmp_path, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple

    import service.health
    import service.workers

    def disk_full(scene_path, options, on_progress, sessions=None, stop=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(service.workers, "segment_scene", disk_full)
    pool, store, files, job_id = pool_with_one_job(tmp_path, "failed")
    try:
        error = store.get(job_id).error
        assert error["status"] == 507 and error["code"] == "insufficient_storage"
    finally:
        pool.stop()
        store.close()
    assert service.workers.disk_full(RuntimeError("CPLE_FileIO: No space left on device"))
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10**9, 10**9, 1024))
    assert service.health._data_dir(tmp_path).startswith("the data folder's disk is full")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10**9, 0, 10**9))
    assert service.health._data_dir(tmp_path) == "ok"
