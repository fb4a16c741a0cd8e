"""A REQUEST authorizer whose answer the Authorization header chooses (tests only)."""

from typing import Any

INVOCATIONS: list[str] = []


def _policy(effect: str, resource: str, principal: str, **context: Any) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]},
        "context": context,
    }


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    header = event["headers"].get("Authorization") or event["headers"].get("authorization")
    INVOCATIONS.append(header)
    verb, _, who = header.partition(" ")
    stage_arn = event["methodArn"].split("/", 2)
    everything = f"{stage_arn[0]}/{stage_arn[1]}/*/*"
    if verb == "Allow":
        return _policy("Allow", everything, who, userId=who, level=3, admin=False)
    if verb == "Narrow":  # allows only the method it was asked about
        return _policy("Allow", event["methodArn"], who)
    if verb == "Deny":
        return _policy("Deny", everything, who)
    if verb == "Nested":
        return _policy("Allow", everything, who, nested={"not": "allowed"})
    if verb == "Crash":
        raise RuntimeError("the authorizer itself broke")
    raise Exception("Unauthorized")  # the exact text API Gateway maps to 401
