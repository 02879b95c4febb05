"""The cluster topology's MLflow: the tracking server keeps run artifacts in the object store beside the lake
(s3://<lake bucket>/mlflow-artifacts) and serves them to clients, which need no S3 credentials of their own."""

from __future__ import annotations

import uuid

import mlflow
import pytest
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient

from clickrec_platform.stack import service
from clickrec_platform.stack.s3proxy import s3_filesystem
from clickrec_platform_tests.support import free_port

pytestmark = pytest.mark.integration


def test_run_artifacts_go_to_the_object_store_and_come_back_through_the_tracking_server(cluster, tmp_path):
    # A tracking server of the test's own (its own port and pid file), on the stack's backend store, started
    # from the cluster topology's settings as `clickrec --topology cluster up` starts it.
    # (No MLFLOW_TRACKING_URI left in the environment by earlier tests' `mlflow.set_tracking_uri` may stand in
    # for this server's address: the client and the readiness probe must reach this server.)
    settings = cluster.model_copy(update={"home": tmp_path / "home", "mlflow_port": free_port(),
                                          "mlflow_tracking_uri": None})
    assert settings.tracking_uri == f"http://{settings.bind_host}:{settings.mlflow_port}"
    assert settings.mlflow_artifacts_uri == f"s3://{settings.lake_bucket}/mlflow-artifacts"
    server = service(settings, "mlflow")
    assert server.start(), "the test's MLflow server was already running"
    client = MlflowClient(settings.tracking_uri)
    experiment_id = client.create_experiment(f"cluster-artifacts-{uuid.uuid4().hex[:8]}")
    # An experiment's `mlflow-artifacts:` location is resolved against the process's tracking URI, not the
    # client's: pointed at the stack's server (as earlier tests leave it), the artifacts would go to its store.
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        assert server.health().ok
        run = client.create_run(experiment_id)
        report = tmp_path / "report.txt"
        report.write_text("scored on the object store\n")
        model = tmp_path / "model"
        model.mkdir()
        (model / "weights.bin").write_bytes(bytes(range(256)) * 64)
        client.log_artifact(run.info.run_id, str(report))
        client.log_artifacts(run.info.run_id, str(model), artifact_path="model")
        client.set_terminated(run.info.run_id)

        # Stored in the bucket, under the experiment and run …
        store = s3_filesystem(settings)
        prefix = f"{settings.lake_bucket}/mlflow-artifacts/{experiment_id}/{run.info.run_id}/artifacts"
        stored = {key: info.size for key, info in zip(("report.txt", "model/weights.bin"), store.get_file_info(
            [f"{prefix}/report.txt", f"{prefix}/model/weights.bin"]), strict=True) if info.is_file}
        assert stored == {"report.txt": report.stat().st_size, "model/weights.bin": 256 * 64}, stored
        assert not settings.mlflow_artifacts_dir.exists()  # nothing on the local disk

        # … listed and served back by the tracking server.
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["model", "report.txt"]
        fetched = download_artifacts(run_id=run.info.run_id, artifact_path="model", tracking_uri=settings.tracking_uri,
                                     dst_path=str(tmp_path / "fetched"))
        assert (tmp_path / "fetched" / "model" / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes(), \
            fetched
    finally:
        mlflow.set_tracking_uri(previous_uri)
        client.delete_experiment(experiment_id)
        server.stop()

