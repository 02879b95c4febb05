import pytest

from clickrec_platform.stack.jars import SPARK_CONNECTORS, artifact_id, pyspark_jar_artifacts


@pytest.mark.parametrize(
    ("jar", "expected"),
    [
        ("kafka-clients-3.9.2.jar", "kafka-clients"),
        ("delta-spark_4.2_2.13-4.4.0.jar", "delta-spark_4.2_2.13"),
        ("spark-sql-kafka-0-10_2.13-4.2.0.jar", "spark-sql-kafka-0-10_2.13"),
        ("zstd-jni-1.5.7-3.jar", "zstd-jni"),
        ("RoaringBitmap-0.9.25.jar", "RoaringBitmap"),
        ("jsr305-3.0.0.jar", "jsr305"),
    ],
)
def test_artifact_id_strips_the_version(jar, expected):
    assert artifact_id(jar) == expected


def test_connector_bundle_never_duplicates_what_pyspark_ships(settings):
    if not SPARK_CONNECTORS.is_resolved(settings):
        pytest.skip("connector jars not resolved (run `clickrec setup`)")
    names = {artifact_id(j.name) for j in SPARK_CONNECTORS.jars(settings)}
    assert {"spark-sql-kafka-0-10_2.13", "delta-spark_4.2_2.13", "kafka-clients"} <= names
    assert not names & pyspark_jar_artifacts()
