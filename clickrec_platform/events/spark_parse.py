"""The event contract in Spark SQL: parse a Kafka value and give it the reason code `decode` would.

Built from the same `FIELDS` and `VALIDATION_RULES` as the Python decoder and tested against it
(`test_spark_parse.py`), so the stream job quarantines exactly what `decode` rejects, with the
same reason. Values are parsed once into a VARIANT, which keeps JSON's own types: a missing key,
a JSON null, an integer, a float and a string are told apart without a Python round trip.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from clickrec_platform.events.contract import (
    FIELDS,
    INT64_MAX,
    SCHEMA_VERSION,
    VALIDATION_RULES,
    FieldSpec,
)
from clickrec_platform.events.validation import ECHO_CHARS

REASON = "reject_reason"
_PARSED = "_event_variant"
_SPARK_SQL_TYPES = {int: "bigint", str: "string"}
UINT64_MAX = 2**64 - 1


def _raw(spec: FieldSpec) -> str:
    return f"try_variant_get({_PARSED}, '$.{spec.name}', 'variant')"


def _typed(spec: FieldSpec) -> Column:
    return F.expr(f"try_variant_get({_PARSED}, '$.{spec.name}', '{_SPARK_SQL_TYPES[spec.python_type]}')")


def _sql_list(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values))


def _shape_cases(value_column: str) -> list[tuple[str, Column]]:
    """(condition, reason) for JSON that is not a contract-shaped object, in `decode`'s order (the
    precedence of `ValidationRules`): shape, schema version, unknown event, then field by field."""
    cases: list[tuple[str, Column]] = [
        (f"{_PARSED} IS NULL", F.lit("malformed_json")),
        (f"NOT startswith(ltrim({value_column}), '{{')", F.lit("not_object")),
        (f"schema_of_variant({_raw(_version())}) = 'BIGINT' AND "
         f"try_variant_get({_PARSED}, '$.schema_version', 'bigint') != {SCHEMA_VERSION}",
         F.lit("unsupported_schema_version")),
        # The typed `event` column holds the value when it is a JSON string.
        (f"schema_of_variant({_raw(_field('event'))}) = 'STRING' AND {_UNKNOWN_EVENT}", _unknown_event_reason()),
    ]
    for spec in FIELDS:
        kind = f"schema_of_variant({_raw(spec)})"
        if not spec.nullable:  # an absent nullable field reads as null
            cases.append((f"{_raw(spec)} IS NULL", F.lit(f"missing_field:{spec.name}")))
            cases.append((f"is_variant_null({_raw(spec)})", F.lit(f"null_field:{spec.name}")))
        if spec.python_type is int:
            # JSON integers beyond int64 arrive as DECIMAL(n,0), and so do floats written with a zero
            # fraction (5.0), which are a wrong type like any other non-BIGINT. The Python decoder
            # (orjson) reads integers up to 2**64 - 1 exactly and larger ones as floats; the same here.
            as_decimal = f"try_variant_get({_PARSED}, '$.{spec.name}', 'decimal(38,0)')"
            cases.append((f"{kind} RLIKE '^DECIMAL\\\\([0-9]+,0\\\\)$' AND "
                          f"{as_decimal} > {INT64_MAX} AND {as_decimal} <= {UINT64_MAX}",
                          F.lit(f"out_of_range:{spec.name}")))
            cases.append((f"{kind} NOT IN ('BIGINT', 'VOID')", F.lit(f"bad_type:{spec.name}")))
        else:
            cases.append((f"{kind} NOT IN ('STRING', 'VOID')", F.lit(f"bad_type:{spec.name}")))
    return cases


def _rule_cases() -> list[tuple[str, Column]]:
    """(condition, reason) for the rules of `check_event`, in its order, over typed columns."""
    rules = VALIDATION_RULES
    cases: list[tuple[str, Column]] = [
        (f"schema_version != {SCHEMA_VERSION}", F.lit("unsupported_schema_version")),
        (_UNKNOWN_EVENT, _unknown_event_reason())]
    for name in rules.non_empty_fields:
        cases.append((f"{name} = ''", F.lit(f"empty_field:{name}")))
    for name in rules.non_negative_fields:
        cases.append((f"{name} < 0", F.lit(f"negative_id:{name}")))
    cases.append((f"ts < {rules.ts_min_ms} OR ts >= {rules.ts_max_ms}", F.lit("ts_out_of_range")))
    cases.append((f"item_id IS NULL AND event NOT IN ({_sql_list(rules.events_without_item)})",
                  F.lit("item_required")))
    with_transaction = _sql_list(rules.events_with_transaction)
    cases.append((f"event IN ({with_transaction}) AND transaction_id IS NULL", F.lit("transaction_required")))
    cases.append((f"event NOT IN ({with_transaction}) AND transaction_id IS NOT NULL",
                  F.lit("unexpected_transaction_id")))
    with_query = _sql_list(rules.events_with_query)
    cases.append((f"event IN ({with_query}) AND (query IS NULL OR query = '')", F.lit("query_required")))
    cases.append((f"event NOT IN ({with_query}) AND query IS NOT NULL", F.lit("unexpected_query")))
    return cases


def _field(name: str) -> FieldSpec:
    return next(spec for spec in FIELDS if spec.name == name)


def _version() -> FieldSpec:
    return _field("schema_version")


_UNKNOWN_EVENT = f"event NOT IN ({_sql_list(VALIDATION_RULES.event_types)})"


def _unknown_event_reason() -> Column:
    return F.concat(F.lit("unknown_event:"), F.substring("event", 1, ECHO_CHARS))


def _fast_path_shape(value_column: str) -> Column:
    """True when the raw text is exactly the compact form `encode` writes (contract key order, no
    spaces), each value of its field's type; such a row is certain to parse as ``from_json`` reads
    it. Anything else (another producer's key order, spaces) takes the exact, slower VARIANT path.
    One anchored regex without lookaheads: a single linear pass over the text. Strings are matched
    as runs of plain characters between escapes (rather than one alternation per character), which
    java.util.regex runs several times faster.
    """
    number, text = r"-?[0-9]+", r'"[^"\\]*(?:\\.[^"\\]*)*"'
    parts = []
    for spec in FIELDS:
        value = number if spec.python_type is int else text
        if spec.nullable:
            value = f"(?:{value}|null)"
        parts.append(f'"{spec.name}":{value}')
    return F.col(value_column).rlike("^\\{" + ",".join(parts) + "\\}$")


def _case(cases: list[tuple[str, Column]], otherwise: Column) -> Column:
    expression: Column | None = None
    for condition, code in cases:
        expression = (F.when(F.expr(condition), code) if expression is None
                      else expression.when(F.expr(condition), code))
    return otherwise if expression is None else expression.otherwise(otherwise)


def parse_events(frame: DataFrame, value_column: str = "value") -> DataFrame:
    """``frame`` plus one typed column per contract field and ``reject_reason`` (null when valid).

    ``value_column`` holds the Kafka value as a string. Rows whose raw text shows them to be
    well-shaped are parsed with ``from_json`` and checked against the rules alone; the rest go
    through a VARIANT, which tells a missing key, a JSON null and each wrong type apart, exactly as
    `decode` does.
    """
    from clickrec_platform.events.contract import spark_schema

    fast_schema = spark_schema().add("_corrupt", "string")
    fast = F.from_json(F.col(value_column), fast_schema,
                       {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"})
    # inline(array(...)) makes from_json a generator's input, evaluated once per row; as a plain
    # column, the optimizer would copy it into every field that reads it.
    staged = frame.select("*", F.inline(F.array(fast)))
    certain = _fast_path_shape(value_column) & F.col("_corrupt").isNull()
    for spec in FIELDS:
        if not spec.nullable:
            certain = certain & F.col(spec.name).isNotNull()
    certain = F.coalesce(certain, F.lit(False))
    no_reason = F.lit(None).cast("string")
    staged = staged.withColumn("_certain", certain)
    # Where the fast path is not certain, the VARIANT decides the types and the reason.
    variant = F.when(~F.col("_certain"), F.expr(f"try_parse_json({value_column})"))
    staged = staged.withColumn(_PARSED, variant).select(
        *frame.columns, "_certain", _PARSED,
        *[F.when(F.col("_certain"), F.col(spec.name)).otherwise(_typed(spec)).alias(spec.name) for spec in FIELDS])
    reason = F.when(F.col("_certain"), _case(_rule_cases(), no_reason)).otherwise(
        _case(_shape_cases(value_column), _case(_rule_cases(), no_reason)))
    return staged.withColumn(REASON, reason).drop(_PARSED, "_certain")


def parse_kafka_values(records: DataFrame) -> DataFrame:
    """Kafka rows (binary ``value``) plus the contract fields and ``reject_reason``: ``parse_events``
    over the value read as UTF-8 text, as every query of the stream job parses its records."""
    text = "_value_text"
    return parse_events(records.withColumn(text, F.col("value").cast("string")), text).drop(text)
