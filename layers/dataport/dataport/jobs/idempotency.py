"""Where Powertools' idempotency keeps its records: the idempotency table (DynamoDB)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from dataport import aws
from dataport.settings import get_settings


def persistence_layer() -> DynamoDBPersistenceLayer:
    """The table named by settings, through the one client factory (endpoints honoured)."""
    return DynamoDBPersistenceLayer(table_name=get_settings().idempotency_table,
                                    boto3_client=aws.dynamodb())
