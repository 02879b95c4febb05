"""How delta-rs reaches the lake: URIs and storage options from the settings, and the tables under a root."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from clickrec_platform.lake.storage import delta_rs_location, delta_tables_under, table_exists
from clickrec_platform.settings import Settings


def test_an_s3a_lake_maps_to_s3_with_the_endpoint_and_credentials(tmp_path: Path):
    settings = Settings(_env_file=None, home=tmp_path, s3_endpoint="http://127.0.0.1:9000", s3_access_key="lake",
                        s3_secret_key="s3cr3t", s3_region="us-east-1", s3_path_style=True, s3_allow_http=True)
    assert delta_rs_location("s3a://clickrec-lake/lake/silver/events", settings) == (
        "s3://clickrec-lake/lake/silver/events",
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "lake", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
         "AWS_REGION": "us-east-1", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false", "AWS_ALLOW_HTTP": "true"})
    assert "s3cr3t" not in repr(settings)


def test_unset_s3_settings_leave_delta_rs_its_own_aws_defaults(tmp_path: Path):
    settings = Settings(_env_file=None, home=tmp_path, s3_endpoint=None, s3_access_key=None, s3_secret_key=None,
                        s3_region=None, s3_path_style=False, s3_allow_http=False)
    assert delta_rs_location("s3://bucket/prefix/gold/items", settings) == (
        "s3://bucket/prefix/gold/items", {"AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "true", "AWS_ALLOW_HTTP": "false"})


def test_local_lakes_need_no_storage_options(tmp_path: Path):
    settings = Settings(_env_file=None, home=tmp_path)
    assert delta_rs_location("/data/lake/silver/events", settings) == ("/data/lake/silver/events", {})
    assert delta_rs_location("file:///data/lake/silver/events", settings) == ("/data/lake/silver/events", {})
    assert delta_rs_location("file:/data/lake/silver/events", settings) == ("/data/lake/silver/events", {})


def test_the_tables_under_a_lake_root(tmp_path: Path):
    settings = Settings(_env_file=None, home=tmp_path)
    lake = tmp_path / "lake"
    assert delta_tables_under(str(lake), settings) == []
    for table in ("silver/events", "gold/items", "_checkpoints/refine"):
        write_deltalake(str(lake / table), pa.table({"x": [1]}))
    (lake / "silver" / "not_a_table").mkdir()
    assert delta_tables_under(str(lake), settings) == [
        ("gold", "items", f"{lake}/gold/items"), ("silver", "events", f"{lake}/silver/events")]
    assert table_exists(f"{lake}/silver/events", settings)
    assert not table_exists(f"{lake}/silver/not_a_table", settings)
    assert not table_exists(f"{lake}/silver/never_written", settings)
