"""JVM dependencies resolved once from Maven Central by Maven, into ``<home>/jars/<bundle>/``.

Four bundles, each described by a pom under ``infra/``: the Apache Kafka broker, the Spark
connectors (Kafka source/sink and Delta Lake) and the S3A file system (hadoop-aws) that the pyspark
wheel does not ship, and S3Proxy (the cluster topology's object store). A bundle is
resolved again only when its pom changes, so starting Kafka or Spark never touches the network.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clickrec_platform.settings import PROJECT_ROOT, Settings
from clickrec_platform.stack.process import ServiceError

# The version is the first "-<digit>..." tail without "_": artifact ids carry the Scala suffix
# ("_2.13") and may hold digits themselves ("spark-sql-kafka-0-10_2.13-4.2.0.jar").
_ARTIFACT_ID = re.compile(r"^(?P<artifact>.+?)-\d[^_]*\.jar$")


def artifact_id(jar_name: str) -> str:
    """``kafka-clients-3.9.2.jar`` -> ``kafka-clients``."""
    match = _ARTIFACT_ID.match(jar_name)
    return match.group("artifact") if match else jar_name.removesuffix(".jar")


def pyspark_jar_artifacts() -> set[str]:
    import pyspark

    return {artifact_id(p.name) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}


@dataclass(frozen=True)
class JarBundle:
    name: str
    pom: Path
    # Leave out what the runtime already has on its classpath (Spark's own jars, for the connectors).
    skip_bundled_with_pyspark: bool = False

    def folder(self, settings: Settings) -> Path:
        return settings.jars_dir / self.name

    def _marker(self, settings: Settings) -> Path:
        return self.folder(settings) / ".resolved-from"

    def _pom_digest(self) -> str:
        return hashlib.sha256(self.pom.read_bytes()).hexdigest()

    def is_resolved(self, settings: Settings) -> bool:
        marker = self._marker(settings)
        return marker.is_file() and marker.read_text().strip() == self._pom_digest()

    def jars(self, settings: Settings) -> list[Path]:
        if not self.is_resolved(settings):
            raise ServiceError(f"The {self.name} jars are not resolved yet: run `clickrec setup` "
                               f"(or `make setup`) first.")
        return sorted(self.folder(settings).glob("*.jar"))

    def resolve(self, settings: Settings) -> bool:
        """Resolve with Maven unless already done for this pom. True if it resolved now."""
        if self.is_resolved(settings):
            return False
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError("Maven (`mvn`) is required to resolve jars from Maven Central: "
                               "run `clickrec setup` as root, or `apt-get install maven`.")
        target = self.folder(settings)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as staging:
            result = subprocess.run(
                [mvn, "-B", "-q", "-f", str(self.pom), "dependency:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
                raise ServiceError(f"Maven could not resolve {self.pom}:\n{tail}")
            if self.skip_bundled_with_pyspark:
                bundled = pyspark_jar_artifacts()
                for jar in Path(staging).glob("*.jar"):
                    if artifact_id(jar.name) in bundled:
                        jar.unlink()
            (Path(staging) / ".resolved-from").write_text(self._pom_digest())
            shutil.rmtree(target, ignore_errors=True)
            Path(staging).rename(target)
        return True


KAFKA_BROKER = JarBundle("kafka", PROJECT_ROOT / "infra" / "kafka" / "pom.xml")
SPARK_CONNECTORS = JarBundle("spark", PROJECT_ROOT / "infra" / "spark" / "pom.xml",
                             skip_bundled_with_pyspark=True)
SPARK_S3 = JarBundle("spark-s3", PROJECT_ROOT / "infra" / "spark-s3" / "pom.xml", skip_bundled_with_pyspark=True)
S3PROXY = JarBundle("s3proxy", PROJECT_ROOT / "infra" / "s3proxy" / "pom.xml")
BUNDLES = (KAFKA_BROKER, SPARK_CONNECTORS, SPARK_S3, S3PROXY)
