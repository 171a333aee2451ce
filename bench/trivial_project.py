"""The baseline of ``bench/e2e.py``: a trivial Dagster project with ov-assets' four asset keys,
the same partitions, and resources on the same servers (PostgreSQL, the S3 endpoint), written
the way Dagster's documentation writes one: defaults everywhere (multiprocess executor, the
filesystem IO manager), configuration through ``dg.EnvVar``. Each asset does one trivial call on
its server, so a run costs what Dagster itself costs.

    dagster asset materialize -f bench/trivial_project.py --select 'pqr_records*' --partition '2024-01-01|afinia'
"""

from typing import Any

import dagster as dg

partitions = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(start_date="2020-10-01", timezone="America/Bogota"),
        "empresa": dg.StaticPartitionsDefinition(["afinia", "aire"]),
    }
)


class Postgres(dg.ConfigurableResource):
    """A connection per use, like any small project."""

    host: str
    port: int = 5432
    dbname: str
    user: str
    password: str = ""

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, dbname=self.dbname, user=self.user, password=self.password or None
        ) as conn:
            return conn.execute(sql).fetchall()


class Bucket(dg.ConfigurableResource):
    bucket: str
    endpoint_url: str
    region_name: str = "us-east-1"

    def first_key(self) -> list[str]:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region_name)
        return [o["Key"] for o in client.list_objects_v2(Bucket=self.bucket, MaxKeys=1).get("Contents", [])]


@dg.asset(partitions_def=partitions)
def raw_pqr_files() -> None:
    """Nothing to extract."""


@dg.asset(partitions_def=partitions, deps=[raw_pqr_files])
def pqr_records(context: dg.AssetExecutionContext) -> list[dict[str, str]]:
    return [{"partition": context.partition_key}]


@dg.asset(partitions_def=partitions)
def pqr_table(pqr_records: list[dict[str, str]], postgres: Postgres) -> dg.MaterializeResult:
    (row,) = postgres.query("SELECT count(*) FROM pg_class")
    return dg.MaterializeResult(metadata={"records": len(pqr_records), "relations": row[0]})


@dg.asset(partitions_def=partitions, deps=[pqr_table])
def pqr_s3_objects(pqr_records: list[dict[str, str]], s3: Bucket) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"records": len(pqr_records), "listed": len(s3.first_key())})


defs = dg.Definitions(
    assets=[raw_pqr_files, pqr_records, pqr_table, pqr_s3_objects],
    resources={
        "postgres": Postgres(
            host=dg.EnvVar("POSTGRES_HOST"),
            port=dg.EnvVar.int("POSTGRES_PORT"),
            dbname=dg.EnvVar("POSTGRES_DB"),
            user=dg.EnvVar("POSTGRES_USER"),
        ),
        "s3": Bucket(bucket=dg.EnvVar("AWS_S3_BUCKET_NAME"), endpoint_url=dg.EnvVar("AWS_ENDPOINT_URL")),
    },
)
