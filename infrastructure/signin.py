"""A first credential for a deployed stack, made with the operator's own AWS credentials.

    python -m infrastructure.signin token   --stack dataport-dev --user-id <24 hex> [--admin]
    python -m infrastructure.signin api-key --stack dataport-dev --user-id <24 hex> --name ops

`--admin` makes an administrator's credential (the token's `scope` names `dataport:admin`; the
key has the admin role): the first administrator, who may then make others' admin keys.

`token` reads the stack's HS256 signing secret (output JwtSecretArn: the stack's own or
ClaudeLens's) from Secrets Manager and signs a bearer token for the user; `api-key` writes an API
key for the user into the API keys table (output ApiKeysTableName) and prints the key, the only
time it exists. Either needs only what the operator's AWS credentials allow
(`secretsmanager:GetSecretValue` on the secret, or `dynamodb:PutItem` on the table, and
`cloudformation:DescribeStacks` with `--stack`). `--secret-arn` / `--api-keys-table` name the
resources directly instead (the local stack has no CloudFormation). Nothing is logged: the
credential goes to stdout alone, so `$(make token ...)` can capture it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import boto3

from dataport.api_key_store import ApiKeyStore
from dataport.auth import issue_api_key, issue_token


def stack_output(stack: str, name: str) -> str:
    """One output of a deployed stack (CloudFormation DescribeStacks)."""
    answer = boto3.client("cloudformation").describe_stacks(StackName=stack)
    for output in answer["Stacks"][0].get("Outputs", []):
        if output["OutputKey"] == name:
            return str(output["OutputValue"])
    raise SystemExit(f"stack {stack} has no output {name}: deploy the current template.yaml")


def signing_secret(secret_arn: str) -> str:
    value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)
    return str(value["SecretString"])


def make_token(secret_arn: str, user_id: str, ttl_seconds: int, *, admin: bool = False) -> str:
    return issue_token(user_id, signing_secret(secret_arn), ttl_seconds, admin=admin)


def make_api_key(table: str, user_id: str, name: str, days: int | None, *,
                 admin: bool = False) -> str:
    expires_at = None if days is None else int(
        (datetime.now(UTC) + timedelta(days=days)).timestamp())
    key, _record = issue_api_key(user_id, name, expires_at=expires_at,
                                 role="admin" if admin else "user",
                                 store=ApiKeyStore(table=table))
    return key


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infrastructure.signin",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="sign a bearer token for a user")
    key = commands.add_parser("api-key", help="make an API key for a user")
    for command in (token, key):
        command.add_argument("--user-id", required=True, help="the ClaudeLens user id (24 hex)")
        command.add_argument("--stack", help="the deployed stack's name (reads its outputs)")
        command.add_argument("--admin", action="store_true",
                             help="an administrator's credential (instance backups and restores)")
    token.add_argument("--secret-arn", help="the signing secret (instead of --stack)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds the token lives")
    key.add_argument("--api-keys-table", help="the API keys table (instead of --stack)")
    key.add_argument("--name", required=True, help="what the key is for (shown in listings)")
    key.add_argument("--days", type=int, help="days until the key expires (default: never)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "token":
            secret = args.secret_arn or (args.stack and stack_output(args.stack, "JwtSecretArn"))
            if not secret:
                raise SystemExit("token: pass --stack or --secret-arn")
            print(make_token(secret, args.user_id, args.ttl, admin=args.admin))
        else:
            table = args.api_keys_table or (args.stack
                                            and stack_output(args.stack, "ApiKeysTableName"))
            if not table:
                raise SystemExit("api-key: pass --stack or --api-keys-table")
            print(make_api_key(table, args.user_id, args.name, args.days, admin=args.admin))
    except ValueError as error:  # a user id that is no ObjectId, a secret too short...
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
