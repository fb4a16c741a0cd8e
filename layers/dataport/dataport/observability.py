"""One Logger, Tracer and Metrics for every function (AWS Lambda Powertools)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "dataport"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace="Dataport", service=SERVICE)
