"""S3Proxy: the cluster topology's object store, an S3 API over a folder under the state dir.

jclouds' ``filesystem`` provider (not ``filesystem-nio2``, whose directory markers break the creation of
Delta's ``_delta_log`` through s3a), signed requests only (AWS v2 or v4), with the access key and
generated secret of the settings. Buckets are folders under ``state/s3proxy/data``; the lake's bucket
is created once it answers.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pyarrow import fs as pafs

from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.stack.jars import S3PROXY
from clickrec_platform.stack.kafka import java_executable
from clickrec_platform.stack.service import Health, ServiceSpec


def s3_filesystem(settings: Settings) -> pafs.S3FileSystem:
    """Arrow's S3 client for the settings' store (the bucket-level operations: create, list)."""
    endpoint = urlsplit(settings.s3_endpoint or "")
    secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
    return pafs.S3FileSystem(access_key=settings.s3_access_key, secret_key=secret,
                             region=settings.s3_region or "us-east-1",
                             endpoint_override=endpoint.netloc or None, scheme=endpoint.scheme or "https",
                             force_virtual_addressing=not settings.s3_path_style,
                             allow_bucket_creation=True, connect_timeout=3, request_timeout=5)


def s3proxy_url(s: Settings) -> str:
    return f"http://{s.bind_host}:{s.s3proxy_port}"


def _folder(s: Settings) -> Path:
    return s.state_dir / "s3proxy"


def properties(s: Settings) -> dict[str, str]:
    access, secret = s.s3_access_key or "", s.s3_secret_key.get_secret_value() if s.s3_secret_key else ""
    return {
        "s3proxy.endpoint": s3proxy_url(s),
        "s3proxy.authorization": "aws-v2-or-v4",
        "s3proxy.identity": access,
        "s3proxy.credential": secret,
        "jclouds.provider": "filesystem",
        "jclouds.filesystem.basedir": str(_folder(s) / "data"),
        # jclouds asks for them even for a folder.
        "jclouds.identity": access,
        "jclouds.credential": secret,
    }


def _prepare(s: Settings) -> None:
    s.ensure_local_s3_secret()
    (_folder(s) / "data").mkdir(parents=True, exist_ok=True)
    config = _folder(s) / "s3proxy.conf"
    config.touch(mode=0o600)
    config.write_text("# Written by `clickrec up` from the settings; edits are overwritten.\n"
                      + "".join(f"{k}={v}\n" for k, v in properties(s).items()))


def _command(s: Settings) -> list[str]:
    return [java_executable(), "-Xmx256m", "-XX:+UseSerialGC",
            f"-Dlogback.configurationFile={PROJECT_ROOT / 'infra' / 's3proxy' / 'logback.xml'}",
            "-cp", ":".join(str(j) for j in S3PROXY.jars(s)), "org.gaul.s3proxy.Main",
            "--properties", str(_folder(s) / "s3proxy.conf")]


def _create_bucket(s: Settings) -> None:
    """The lake's bucket (idempotent)."""
    store = s3_filesystem(s)
    if store.get_file_info(s.lake_bucket).type == pafs.FileType.NotFound:
        store.create_dir(s.lake_bucket)


def _health(s: Settings) -> Health:
    try:
        buckets = [info.path for info in s3_filesystem(s).get_file_info(pafs.FileSelector(""))]
    except OSError as exc:
        return Health(False, f"{type(exc).__name__}: {str(exc)[:160]}")
    return Health(True, f"S3 API, {len(buckets)} bucket(s): {', '.join(buckets) or 'none yet'}")


S3PROXY_SERVICE = ServiceSpec(name="s3proxy", command=_command, probe=_health, url=s3proxy_url,
                              port=lambda s: s.s3proxy_port, marker=lambda s: str(_folder(s) / "s3proxy.conf"),
                              prepare=_prepare, after_ready=_create_bucket)
