"""CloudFormation intrinsic functions, conditions, parameters and pseudo parameters as
pumphouse evaluates them (``pumphouse.config.templates.intrinsics``), on templates read
by the real loader so that the short-form tags are covered too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pumphouse.config.templates.intrinsics import NO_VALUE, Context, TemplateProblem
from pumphouse.config.templates.reader import read_template
from pumphouse.config.templates.resources import attribute_value, ref_value

TEMPLATE = """\
Parameters:
  Env: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Size: {Type: Number, Default: 10, MinValue: 1, MaxValue: 100}
  Names: {Type: CommaDelimitedList, Default: "a, b,c"}
  Ports: {Type: "List<Number>", Default: "80,443"}
  NoDefault: {Type: String}
  Pattern: {Type: String, Default: abc, AllowedPattern: "[a-z]+"}
  Ami: {Type: "AWS::SSM::Parameter::Value<String>", Default: /images/latest}
Mappings:
  Sizes:
    dev: {Batch: 5}
    prod: {Batch: 50}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  IsDev: !Not [!Condition IsProd]
  Both: !And [!Condition IsDev, !Equals [1, 1]]
  Either: !Or [!Condition IsProd, !Equals [true, "true"]]
  Loop: !Not [!Condition Loop]
Resources:
  Queue:
    Type: AWS::SQS::Queue
  NamedQueue:
    Type: AWS::SQS::Queue
    Properties: {QueueName: !Sub "${Env}-orders"}
  Fifo:
    Type: AWS::SQS::Queue
    Properties: {FifoQueue: true}
  Stream:
    Type: AWS::Kinesis::Stream
    Properties: {Name: clicks}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: orders
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  PlainTable:
    Type: AWS::DynamoDB::Table
  Topic:
    Type: AWS::SNS::Topic
  Bucket:
    Type: AWS::S3::Bucket
  Secret:
    Type: AWS::SecretsManager::Secret
    Properties: {Name: db-password}
  Vpc:
    Type: AWS::EC2::VPC
  ProdOnly:
    Type: AWS::SQS::Queue
    Condition: IsProd
"""


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return context(tmp_path, TEMPLATE)


def context(tmp_path: Path, text: str, **kwargs: Any) -> Context:
    path = tmp_path / "template.yaml"
    path.write_text(text)
    made = Context(template=read_template(path), stack_name="shop", **kwargs)
    made.ref_resource = lambda name, loc: ref_value(made, name, loc)
    made.get_att = lambda name, attribute, loc: attribute_value(made, name, attribute, loc)
    return made


def short(ctx: Context, tmp_path: Path, expression: str) -> Any:
    """Evaluate one short-form expression through the YAML loader."""
    path = tmp_path / "expr.yaml"
    path.write_text(f"Resources: {{}}\nValue: {expression}\n")
    return ctx.resolve(read_template(path)["Value"], ("Value",))


def problem_of(ctx: Context, value: Any) -> TemplateProblem:
    with pytest.raises(TemplateProblem) as caught:
        ctx.resolve(value, ("Resources", "Fn", "Properties", "X"))
    return caught.value


# -- Ref, pseudo parameters, parameters ------------------------------------------------


def test_pseudo_parameters(ctx: Context) -> None:
    assert ctx.resolve({"Ref": "AWS::Region"}, ()) == "us-east-1"
    assert ctx.resolve({"Ref": "AWS::AccountId"}, ()) == "000000000000"
    assert ctx.resolve({"Ref": "AWS::StackName"}, ()) == "shop"
    assert ctx.resolve({"Ref": "AWS::Partition"}, ()) == "aws"
    assert ctx.resolve({"Ref": "AWS::URLSuffix"}, ()) == "amazonaws.com"
    assert ctx.resolve({"Ref": "AWS::NotificationARNs"}, ()) == []
    assert ctx.resolve({"Ref": "AWS::StackId"}, ()).startswith(
        "arn:aws:cloudformation:us-east-1:000000000000:stack/shop/"
    )


def test_partition_and_suffix_follow_the_region(tmp_path: Path) -> None:
    china = context(tmp_path, TEMPLATE, region="cn-north-1", account_id="123456789012")
    assert china.resolve({"Ref": "AWS::Partition"}, ()) == "aws-cn"
    assert china.resolve({"Ref": "AWS::URLSuffix"}, ()) == "amazonaws.com.cn"
    assert china.resolve({"Fn::GetAtt": ["Stream", "Arn"]}, ()) == (
        "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/clicks"
    )


def test_no_value_removes_the_key_or_item(ctx: Context) -> None:
    value = {"A": {"Ref": "AWS::NoValue"}, "B": [1, {"Ref": "AWS::NoValue"}, 2]}
    assert ctx.resolve(value, ()) == {"B": [1, 2]}
    assert ctx.resolve({"Ref": "AWS::NoValue"}, ()) is NO_VALUE


def test_parameters_take_their_type(ctx: Context) -> None:
    assert ctx.resolve({"Ref": "Env"}, ()) == "dev"
    assert ctx.resolve({"Ref": "Size"}, ()) == 10
    assert ctx.resolve({"Ref": "Names"}, ()) == ["a", "b", "c"]
    assert ctx.resolve({"Ref": "Ports"}, ()) == [80, 443]


def test_overrides_win_over_defaults(tmp_path: Path) -> None:
    ctx = context(
        tmp_path, TEMPLATE, parameter_overrides={"Env": "prod", "Size": "20", "NoDefault": "x"}
    )
    assert ctx.parameter_problems == []
    assert ctx.resolve({"Ref": "Env"}, ()) == "prod"
    assert ctx.resolve({"Ref": "Size"}, ()) == 20
    assert ctx.resolve({"Ref": "NoDefault"}, ()) == "x"


def test_parameter_values_are_checked(tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        TEMPLATE,
        parameter_overrides={"Env": "test", "Size": "500", "Pattern": "A1", "Typo": "1"},
    )
    assert [(p.loc, p.message) for p in ctx.parameter_problems] == [
        (
            ("Parameters",),
            "--parameter-overrides Typo=...: the template has no parameter Typo (its "
            "parameters: Env, Size, Names, Ports, NoDefault, Pattern, Ami)",
        ),
        (("Parameters", "Env"), "'test' is not one of the AllowedValues: dev, prod"),
        (("Parameters", "Size"), "500 is outside MaxValue 100"),
        (("Parameters", "Pattern"), "'A1' does not match AllowedPattern [a-z]+"),
    ]


def test_a_parameter_without_a_value_is_a_problem_where_it_is_used(ctx: Context) -> None:
    problem = problem_of(ctx, {"Ref": "NoDefault"})
    assert problem.loc == ("Resources", "Fn", "Properties", "X", "Ref")
    assert problem.message == (
        "parameter NoDefault has no Default: give it with --parameter-overrides NoDefault=VALUE"
    )


def test_unknown_ref_is_one_clear_problem(ctx: Context) -> None:
    problem = problem_of(ctx, {"Ref": "Missing"})
    assert problem.message == "!Ref 'Missing' names no parameter, resource or pseudo parameter"


# -- resources ---------------------------------------------------------------------------


def test_resource_refs_and_attributes(ctx: Context) -> None:
    r = ctx.resolve
    assert r({"Ref": "Queue"}, ()) == "https://sqs.us-east-1.amazonaws.com/000000000000/shop-Queue"
    assert (
        r({"Fn::GetAtt": ["Queue", "Arn"]}, ()) == "arn:aws:sqs:us-east-1:000000000000:shop-Queue"
    )
    assert r({"Fn::GetAtt": ["Queue", "QueueName"]}, ()) == "shop-Queue"
    assert r({"Fn::GetAtt": ["Queue", "QueueUrl"]}, ()) == r({"Ref": "Queue"}, ())
    assert r({"Fn::GetAtt": ["NamedQueue", "QueueName"]}, ()) == "dev-orders"
    assert r({"Fn::GetAtt": ["Fifo", "QueueName"]}, ()) == "shop-Fifo.fifo"
    assert r({"Ref": "Stream"}, ()) == "clicks"
    assert (
        r({"Fn::GetAtt": "Stream.Arn"}, ())
        == "arn:aws:kinesis:us-east-1:000000000000:stream/clicks"
    )
    assert r({"Ref": "Table"}, ()) == "orders"
    assert (
        r({"Fn::GetAtt": ["Table", "Arn"]}, ())
        == "arn:aws:dynamodb:us-east-1:000000000000:table/orders"
    )
    assert r({"Fn::GetAtt": ["Table", "StreamArn"]}, ()) == (
        "arn:aws:dynamodb:us-east-1:000000000000:table/orders/stream/1970-01-01T00:00:00.000"
    )
    assert r({"Ref": "Topic"}, ()) == "arn:aws:sns:us-east-1:000000000000:shop-Topic"
    assert r({"Fn::GetAtt": ["Topic", "TopicName"]}, ()) == "shop-Topic"
    assert r({"Ref": "Bucket"}, ()) == "shop-bucket"
    assert r({"Fn::GetAtt": ["Bucket", "Arn"]}, ()) == "arn:aws:s3:::shop-bucket"
    assert r({"Ref": "Secret"}, ()) == (
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-password"
    )


def test_stream_arn_of_a_table_without_a_stream(ctx: Context) -> None:
    problem = problem_of(ctx, {"Fn::GetAtt": ["PlainTable", "StreamArn"]})
    assert problem.message == "!GetAtt PlainTable.StreamArn: the table has no StreamSpecification"


def test_unused_resource_types_have_no_value_only_when_used(ctx: Context) -> None:
    assert problem_of(ctx, {"Ref": "Vpc"}).message == (
        "!Ref 'Vpc': AWS::EC2::VPC is not used by pumphouse and has no local value"
    )
    assert problem_of(ctx, {"Fn::GetAtt": ["Queue", "Nope"]}).message == (
        "!GetAtt Queue.Nope: AWS::SQS::Queue has no attribute Nope pumphouse can give (it "
        "gives Arn, QueueName, QueueUrl)"
    )
    assert problem_of(ctx, {"Fn::GetAtt": ["Ghost", "Arn"]}).message == (
        "!GetAtt Ghost.Arn: no resource 'Ghost'"
    )


def test_a_resource_whose_condition_is_false_has_no_value(ctx: Context) -> None:
    assert not ctx.resource_exists("ProdOnly")
    assert problem_of(ctx, {"Ref": "ProdOnly"}).message == (
        "!Ref 'ProdOnly': the resource is not created (its Condition is false)"
    )


# -- functions, in their short forms ---------------------------------------------------


def test_sub_both_forms(ctx: Context, tmp_path: Path) -> None:
    assert short(ctx, tmp_path, '!Sub "${AWS::StackName}-${Env}-${Stream.Arn}"') == (
        "shop-dev-arn:aws:kinesis:us-east-1:000000000000:stream/clicks"
    )
    assert short(ctx, tmp_path, '!Sub ["${Name}/${Env}", {Name: !Ref Stream}]') == "clicks/dev"
    assert short(ctx, tmp_path, '!Sub "${!Literal} ${Env}"') == "${Literal} dev"


def test_join_select_split(ctx: Context, tmp_path: Path) -> None:
    assert short(ctx, tmp_path, '!Join [":", [a, !Ref Env, 3]]') == "a:dev:3"
    assert short(ctx, tmp_path, "!Join ['', !Ref Names]") == "abc"
    assert short(ctx, tmp_path, "!Select [1, !Ref Names]") == "b"
    assert short(ctx, tmp_path, '!Select ["2", [x, y, z]]') == "z"
    assert short(ctx, tmp_path, '!Split ["/", "a/b/c"]') == ["a", "b", "c"]
    assert short(ctx, tmp_path, '!Select [3, !Split ["/", !GetAtt Table.StreamArn]]') == (
        "1970-01-01T00:00:00.000"
    )


def test_select_outside_the_list(ctx: Context, tmp_path: Path) -> None:
    with pytest.raises(TemplateProblem, match="index 5 is outside the list of 3"):
        short(ctx, tmp_path, "!Select [5, [a, b, c]]")


def test_find_in_map(ctx: Context, tmp_path: Path) -> None:
    assert short(ctx, tmp_path, "!FindInMap [Sizes, !Ref Env, Batch]") == 5
    with pytest.raises(TemplateProblem, match=r"no key 'test' in Mappings\.Sizes"):
        short(ctx, tmp_path, "!FindInMap [Sizes, test, Batch]")


def test_import_value_is_not_resolvable_unless_given(tmp_path: Path) -> None:
    ctx = context(tmp_path, TEMPLATE)
    with pytest.raises(TemplateProblem) as caught:
        short(ctx, tmp_path, "!ImportValue shared-ledger")
    assert caught.value.message == (
        "Fn::ImportValue 'shared-ledger' is not resolvable locally (the export belongs to "
        "another stack): give its value with --import-value shared-ledger=VALUE"
    )
    given = context(tmp_path, TEMPLATE, import_values={"shared-ledger": "ledger-1"})
    assert short(given, tmp_path, "!ImportValue shared-ledger") == "ledger-1"


def test_get_azs_and_base64(ctx: Context, tmp_path: Path) -> None:
    assert short(ctx, tmp_path, '!Select [0, !GetAZs ""]') == "us-east-1a"
    assert short(ctx, tmp_path, "!Base64 hello") == "aGVsbG8="


def test_unknown_function(ctx: Context) -> None:
    assert problem_of(ctx, {"Fn::Nope": 1}).message == (
        "Fn::Nope is not an intrinsic function pumphouse knows"
    )
    assert problem_of(ctx, {"Fn::Transform": {}}).message == (
        "Fn::Transform is not evaluated by pumphouse"
    )


# -- conditions --------------------------------------------------------------------------


def test_conditions(ctx: Context, tmp_path: Path) -> None:
    assert ctx.condition("IsProd", ()) is False
    assert ctx.condition("IsDev", ()) is True
    assert ctx.condition("Both", ()) is True
    assert ctx.condition("Either", ()) is True
    assert short(ctx, tmp_path, "!If [IsProd, 50, !Ref AWS::NoValue]") is NO_VALUE
    assert short(ctx, tmp_path, "!If [IsDev, 5, 50]") == 5
    assert short(ctx, tmp_path, "!Equals [!Ref Size, '10']") is True


def test_condition_problems(ctx: Context, tmp_path: Path) -> None:
    with pytest.raises(TemplateProblem, match="no condition 'Nope' in Conditions"):
        short(ctx, tmp_path, "!If [Nope, 1, 2]")
    with pytest.raises(TemplateProblem, match="the condition refers to itself"):
        ctx.condition("Loop", ())
    with pytest.raises(TemplateProblem, match="Fn::And takes 2 to 10 conditions"):
        short(ctx, tmp_path, "!And [true]")


# -- dynamic references ------------------------------------------------------------------


def test_secrets_manager_references_are_found_with_their_paths() -> None:
    from pumphouse.config.templates.dynamic import SecretReference, find_references

    arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-AbCdEf"
    data = {
        "A": ["x {{resolve:secretsmanager:db}} y"],
        "B": f"{{{{resolve:secretsmanager:{arn}:SecretString:password:AWSPREVIOUS}}}}",
        "C": "{{resolve:secretsmanager:db:SecretString::AWSCURRENT:v-1}}",
    }
    assert find_references(data) == [
        (("A", 0), SecretReference(text="{{resolve:secretsmanager:db}}", secret_id="db")),
        (
            ("B",),
            SecretReference(
                text=data["B"], secret_id=arn, json_key="password", version_stage="AWSPREVIOUS"
            ),
        ),
        (
            ("C",),
            SecretReference(
                text=data["C"], secret_id="db", version_stage="AWSCURRENT", version_id="v-1"
            ),
        ),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{resolve:secretsmanager:}}", "no secret id"),
        ("{{resolve:secretsmanager:db:SecretBinary}}", "expected secretsmanager:secret-id:"),
        ("{{resolve:ssm-secure:/db/password}}", "is not resolvable locally"),
    ],
)
def test_malformed_references(text: str, message: str) -> None:
    from pumphouse.config.templates.dynamic import find_references

    with pytest.raises(TemplateProblem, match=message):
        find_references({"X": text})


def test_an_ssm_parameter_needs_an_override(tmp_path: Path) -> None:
    ctx = context(tmp_path, TEMPLATE)
    assert problem_of(ctx, {"Ref": "Ami"}).message == (
        "parameter Ami is read from SSM Parameter Store, which is not resolvable locally: "
        "give it with --parameter-overrides Ami=VALUE"
    )
    given = context(tmp_path, TEMPLATE, parameter_overrides={"Ami": "ami-123"})
    assert given.resolve({"Ref": "Ami"}, ()) == "ami-123"
