"""What template.yaml promises an operator who deploys next to ClaudeLens: the MongoDB URI only
where it is needed (read at run time), sign-in with the tokens users already have, and a private
network for the functions that reach MongoDB (docs/deploy.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infrastructure.local.template import Template

ROOT = Path(__file__).resolve().parents[2]
MONGO_SECRET_ARN = ("arn:aws:secretsmanager:us-east-1:123456789012:secret:"
                    "dataport/dev/mongodb-uri-??????")


def _reaches_mongodb(code_dir: Path) -> bool:
    """What the code says: a handler that reaches MongoDB loads the MongoDB settings and
    renews refused credentials (functions/<name>/handler.py)."""
    source = (code_dir / "handler.py").read_text()
    return "get_mongo_settings()" in source and "@renews_credentials" in source


def _reads_mongo_secret(statements: tuple[Any, ...]) -> bool:
    return any("secretsmanager:GetSecretValue" in s["Action"]
               and "mongodb-uri" in str(s["Resource"]) for s in statements)


@pytest.fixture(scope="module")
def public() -> Template:
    return Template(ROOT / "template.yaml")


def test_some_functions_reach_mongodb_and_some_do_not(public: Template) -> None:
    reach = {lid for lid, f in public.functions().items() if _reaches_mongodb(f.code_dir)}
    # the API counts for export estimates and backup previews
    assert {"ApiFunction", "ExportPlanFunction", "ExportWorkerFunction",
            "ImportExecuteFunction"} <= reach
    assert not reach & {"AuthorizerFunction", "ExportFinalizeFunction",
                        "WsConnectFunction", "JobFailedFunction"}


@pytest.mark.parametrize("logical_id", sorted(Template(ROOT / "template.yaml").functions()))
def test_only_functions_that_reach_mongodb_get_its_secret(public: Template,
                                                          logical_id: str) -> None:
    function = public.functions()[logical_id]
    needs = _reaches_mongodb(function.code_dir)
    assert ("MONGODB_URI_SECRET" in function.environment) is needs
    assert ("MONGODB_DATABASE" in function.environment) is needs
    assert _reads_mongo_secret(function.policy_statements) is needs
    assert "MONGODB_URI" not in function.environment  # never the URI itself
    if needs:
        assert function.environment["MONGODB_URI_SECRET"] == "dataport/dev/mongodb-uri"
        resources = [s["Resource"] for s in function.policy_statements
                     if "secretsmanager:GetSecretValue" in s["Action"]
                     and "mongodb-uri" in str(s["Resource"])]
        assert resources == [MONGO_SECRET_ARN]  # that secret only, no wildcard beyond its suffix


def test_no_global_variable_mentions_mongodb(public: Template) -> None:
    variables = public.raw["Globals"]["Function"]["Environment"]["Variables"]
    assert not [name for name in variables if "MONGO" in name]
    assert "resolve:secretsmanager" not in (ROOT / "template.yaml").read_text()


def test_each_environment_names_its_own_mongodb_secret() -> None:
    import tomllib  # noqa: PLC0415

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    names = {}
    for env in ("default", "prod"):
        overrides = config[env]["deploy"]["parameters"]["parameter_overrides"]
        values = dict(item.split("=", 1) for item in overrides.split())
        names[env] = values["MongoDbUriSecretName"]
    assert names == {"default": "dataport/dev/mongodb-uri", "prod": "dataport/prod/mongodb-uri"}
    rule = Template(ROOT / "template.yaml").raw["Rules"]["ProdHasItsOwnMongoDbSecret"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}


# ------------------------------------------------------------------ sign-in

CLAUDELENS_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:claudelens/jwt-AbCdEf"


def _jwt_secret_statements(template: Template) -> list[Any]:
    authorizer = template.functions()["AuthorizerFunction"]
    return [s["Resource"] for s in authorizer.policy_statements
            if "secretsmanager:GetSecretValue" in s["Action"]]


def test_the_stack_generates_a_signing_secret_unless_given_claudelens_one(
        public: Template) -> None:
    own = public.secrets()
    assert "JwtSecret" in own
    assert _jwt_secret_statements(public) == [public.ref("JwtSecret")]

    theirs = Template(ROOT / "template.yaml", parameters={"JwtSecretArn": CLAUDELENS_SECRET})
    assert "JwtSecret" not in theirs.secrets()  # nothing generated, nothing to leak
    assert _jwt_secret_statements(theirs) == [CLAUDELENS_SECRET]  # that secret only
    for function in theirs.functions().values():
        assert function.environment["JWT_SECRET_PARAMETER"] == CLAUDELENS_SECRET


def test_only_the_authorizer_reads_the_signing_secret_and_the_oidc_settings(
        public: Template) -> None:
    for logical_id, function in public.functions().items():
        reads = [s for s in function.policy_statements
                 if "secretsmanager:GetSecretValue" in s["Action"]
                 and "JwtSecret" in str(s["Resource"])]
        assert bool(reads) is (logical_id == "AuthorizerFunction")
        assert ("OIDC_ISSUER" in function.environment) is (logical_id == "AuthorizerFunction")


def test_oidc_parameters_reach_the_authorizer() -> None:
    template = Template(ROOT / "template.yaml", parameters={
        "OidcIssuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool",
        "OidcAudience": "client-id", "UserIdClaim": "custom:claudelens_user_id"})
    environment = template.functions()["AuthorizerFunction"].environment
    assert environment["OIDC_ISSUER"] == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool"
    assert environment["OIDC_AUDIENCE"] == "client-id"
    assert environment["USER_ID_CLAIM"] == "custom:claudelens_user_id"


def test_outputs_name_what_a_client_and_an_operator_need(public: Template) -> None:
    outputs = public.raw["Outputs"]
    assert {"RestApiUrl", "WebSocketUrl", "JwtSecretArn", "ApiKeysTableName",
            "MongoDbUriSecretName", "UserIdClaim"} <= set(outputs)
    assert public.resolve(outputs["JwtSecretArn"]["Value"]) == public.ref("JwtSecret")


# ------------------------------------------------------------------ private MongoDB

PRIVATE = {"SubnetIds": "subnet-0a,subnet-0b", "SecurityGroupIds": "sg-0fn,sg-0extra",
           "VpcId": "vpc-0d", "RouteTableIds": "rtb-0a,rtb-0b"}
ENDPOINTS = {"S3GatewayEndpoint": ("s3", "Gateway"),
             "DynamoDbGatewayEndpoint": ("dynamodb", "Gateway"),
             "StepFunctionsEndpoint": ("states", "Interface"),
             "KmsEndpoint": ("kms", "Interface"),
             "SecretsManagerEndpoint": ("secretsmanager", "Interface")}


def _vpc_configs(template: Template) -> dict[str, Any]:
    return {lid: template.properties(lid).get("VpcConfig")
            for lid in template.functions()}


def test_a_public_database_deploy_has_no_network_settings(public: Template) -> None:
    assert not [lid for lid, config in _vpc_configs(public).items() if config is not None]
    assert not public.resources("AWS::EC2::VPCEndpoint", "AWS::EC2::SecurityGroup")


def test_with_subnets_the_functions_that_reach_mongodb_run_in_the_vpc() -> None:
    private = Template(ROOT / "template.yaml", parameters=PRIVATE)
    for logical_id, config in _vpc_configs(private).items():
        if _reaches_mongodb(private.functions()[logical_id].code_dir):
            assert config == {"SubnetIds": ["subnet-0a", "subnet-0b"],
                              "SecurityGroupIds": ["sg-0fn", "sg-0extra"]}, logical_id
        else:  # the API, the authorizer, the WebSocket routes... stay out (no ENI cold starts)
            assert config is None, logical_id


def test_with_subnets_the_template_provides_the_endpoints_the_functions_need() -> None:
    private = Template(ROOT / "template.yaml", parameters=PRIVATE)
    assert set(private.resources("AWS::EC2::VPCEndpoint")) == set(ENDPOINTS)
    for logical_id, (service, kind) in ENDPOINTS.items():
        props = private.properties(logical_id)
        assert props["ServiceName"] == f"com.amazonaws.us-east-1.{service}"
        assert props["VpcEndpointType"] == kind
        assert props["VpcId"] == "vpc-0d"
        if kind == "Gateway":
            assert props["RouteTableIds"] == ["rtb-0a", "rtb-0b"]
        else:  # reachable under the service's own name, from the functions' subnets
            assert props["PrivateDnsEnabled"] is True
            assert props["SubnetIds"] == ["subnet-0a", "subnet-0b"]
            assert props["SecurityGroupIds"] == [private.ref("EndpointSecurityGroup")]
    ingress = private.properties("EndpointSecurityGroup")["SecurityGroupIngress"]
    assert ingress == [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                        "SourceSecurityGroupId": "sg-0fn"}]


def test_a_vpc_with_its_own_endpoints_or_nat_gets_none_from_the_stack() -> None:
    private = Template(ROOT / "template.yaml",
                       parameters={**PRIVATE, "CreateVpcEndpoints": "false"})
    assert not private.resources("AWS::EC2::VPCEndpoint", "AWS::EC2::SecurityGroup")
    assert _vpc_configs(private)["ExportWorkerFunction"] is not None


def test_rules_refuse_a_half_given_private_network(public: Template) -> None:
    rules = public.raw["Rules"]
    assert "SecurityGroupIds" in str(rules["PrivateNetworkIsComplete"]["Assertions"])
    described = str(rules["VpcEndpointsHaveTheirVpc"]["Assertions"])
    assert "VpcId" in described
    assert "RouteTableIds" in described
