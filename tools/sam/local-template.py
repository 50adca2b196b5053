"""Local renderings of template.yaml for the SAM CLI (run with .venv-sam/bin/python).

`template` writes the template `sam local invoke` runs: template.yaml with every function's
CodeUri (QuayFunction and WorkerFunction: one binary, two handlers) pointing at a directory
holding the already built bootstrap, as `sam build` would write it.

It also declares, with empty defaults, the variables of the env-vars file that the template
does not declare (AWS_ENDPOINT_URL for the local moto server): `sam local invoke --env-vars`
only overrides variables the function declares, and AWS_REGION/AWS_ACCESS_KEY_ID/
AWS_SECRET_ACCESS_KEY, which Lambda reserves, come from the caller's credentials instead.
Only this local copy gets them; the deployable template.yaml stays free of test settings.

`env` writes one function's environment instead (template defaults with the template's
conditions evaluated on the parameter defaults, `_HANDLER` from its Handler as the
provided runtimes set it, then the env-vars file's values) as KEY=VALUE lines, for running
the bootstrap without a container.

`env-vars` completes the local stack's env-vars file (tools/local-stack.sh writes the
QuayFunction entry) for the durable path: it creates a queue and its dead-letter queue in the
stack's moto server and writes a file where QuayFunction and WorkerFunction both have that
environment plus QUAYHOOK_QUEUE_URL, as the deployed functions do, and ECR push events on
(QUAYHOOK_ECR_PROJECTS=kargo-demo, QUAYHOOK_ECR_REPOSITORY_PREFIXES=kargo-demo/) unless the
file sets them.

`variant` writes a copy of the template whose parameters default to the given values, so
`sam validate` and cfn-lint (which take no parameter values) check that variant too, e.g.
DurablePath=Disabled.

Usage:
  local-template.py template TEMPLATE OUT_TEMPLATE CODE_DIR [ENV_VARS_JSON]
  local-template.py env TEMPLATE ENV_VARS_JSON FUNCTION OUT_ENV_FILE
  local-template.py env-vars ENV_VARS_JSON OUT_ENV_VARS_JSON
  local-template.py variant TEMPLATE OUT_TEMPLATE NAME=VALUE...
"""

import json
import os
import sys

from samcli.yamlhelper import yaml_dump, yaml_parse

FUNCTION_TYPE = "AWS::Serverless::Function"
# The function whose environment tools/local-stack.sh writes; the others get a copy.
HTTP_FUNCTION = "QuayFunction"
WORKER_FUNCTION = "WorkerFunction"
# Set by SAM from the credentials of the `sam` process (and reserved by Lambda).
FROM_CREDENTIALS = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
# The local queues of the durable path (in the local stack's moto server).
LOCAL_QUEUE = "quayhook-local"
LOCAL_DLQ = "quayhook-local-dlq"
# ECR push events locally: the project of the local stack's demo Warehouses (its RBAC grants
# that namespace only, so "*" would be refused) and the repositories named after it.
LOCAL_ECR_PROJECT = "kargo-demo"
LOCAL_ECR_PREFIX = "kargo-demo/"


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml_parse(f.read())


def functions(template):
    return {name: r for name, r in template["Resources"].items() if r.get("Type") == FUNCTION_TYPE}


def write_template(template_path, out_path, code_dir, env_path=None):
    template = load(template_path)
    overrides = {}
    if env_path:
        with open(env_path, encoding="utf-8") as f:
            overrides = json.load(f)
    for name, function in functions(template).items():
        function.pop("Metadata", None)  # already built: nothing for SAM to build
        props = function["Properties"]
        props["CodeUri"] = os.path.relpath(code_dir, os.path.dirname(os.path.abspath(out_path)))
        variables = props.setdefault("Environment", {}).setdefault("Variables", {})
        for var in overrides.get(name, {}):
            # Declared plainly: a conditional declaration (!If [Cond, X, AWS::NoValue], e.g.
            # QUAYHOOK_ECR_PROJECTS with ECR events off by default) would resolve to no
            # variable locally, and the env-vars file could not set it.
            if var not in FROM_CREDENTIALS and (var not in variables or isinstance(variables[var], dict)):
                variables[var] = ""
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(yaml_dump(template))


class Unresolved(Exception):
    """A value only CloudFormation can compute (a resource's Ref or attribute)."""


NO_VALUE = object()


def evaluator(template):
    """Resolves Ref to parameters (their defaults), Fn::If/Equals/Not/And/Or and Condition."""
    parameters = template.get("Parameters", {})
    conditions = template.get("Conditions", {})

    def value(node):
        if isinstance(node, dict) and len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                if arg in parameters:
                    return str(parameters[arg].get("Default", ""))
                raise Unresolved(f"Ref {arg}")
            if key == "Fn::If":
                cond, then, otherwise = arg
                return value(then if condition(cond) else otherwise)
            if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"):
                return truth(node)
            if key == "Fn::Join":
                separator, items = arg
                if isinstance(items, dict):  # a Ref to a CommaDelimitedList parameter
                    items = value(items).split(",")
                return separator.join(value(i) for i in items)
            raise Unresolved(key)
        return node

    def truth(node):
        (key, arg), = node.items()
        if key == "Condition":
            return condition(arg)
        if key == "Fn::Equals":
            return value(arg[0]) == value(arg[1])
        if key == "Fn::Not":
            return not truth_of(arg[0])
        if key == "Fn::And":
            return all(truth_of(a) for a in arg)
        if key == "Fn::Or":
            return any(truth_of(a) for a in arg)
        raise Unresolved(key)

    def truth_of(node):
        return truth(node) if isinstance(node, dict) else bool(node)

    def condition(name):
        return truth_of(conditions[name])

    return value


def write_env(template_path, env_path, function_name, out_path):
    template = load(template_path)
    resolve = evaluator(template)
    props = functions(template)[function_name]["Properties"]
    with open(env_path, encoding="utf-8") as f:
        overrides = json.load(f).get(function_name, {})
    env = {"_HANDLER": props["Handler"]}
    for name, raw in props.get("Environment", {}).get("Variables", {}).items():
        try:
            value = resolve(raw)
        except Unresolved as e:
            if name in overrides:
                continue
            sys.exit(f"{function_name} {name}: cannot resolve {e} without CloudFormation; set it in {env_path}")
        if value is NO_VALUE:
            continue
        if not isinstance(value, str):
            sys.exit(f"{function_name} {name}: cannot resolve {value!r} without CloudFormation")
        env[name] = value
    env.update(overrides)
    with open(out_path, "w", encoding="utf-8") as f:
        for name, value in env.items():
            if "\n" in str(value):
                sys.exit(f"{name}: multi-line values are not supported")
            f.write(f"{name}={value}\n")


def write_env_vars(env_path, out_path):
    import boto3  # the SAM CLI's dependency

    with open(env_path, encoding="utf-8") as f:
        env_vars = json.load(f)
    http = dict(env_vars[HTTP_FUNCTION])
    sqs = boto3.client(
        "sqs",
        endpoint_url=http["AWS_ENDPOINT_URL"],
        region_name=http.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=http.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=http.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )
    dlq_url = sqs.create_queue(QueueName=LOCAL_DLQ)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    queue_url = sqs.create_queue(
        QueueName=LOCAL_QUEUE, Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "360"}
    )["QueueUrl"]
    http["QUAYHOOK_QUEUE_URL"] = queue_url
    # ECR push events (events/ecr-*.json) are replayed too: on for the local stack's project
    # and its repositories, unless the local stack's file says otherwise.
    http.setdefault("QUAYHOOK_ECR_PROJECTS", LOCAL_ECR_PROJECT)
    http.setdefault("QUAYHOOK_ECR_REPOSITORY_PREFIXES", LOCAL_ECR_PREFIX)
    env_vars[HTTP_FUNCTION] = http
    env_vars[WORKER_FUNCTION] = {**http, **env_vars.get(WORKER_FUNCTION, {})}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(env_vars, f, indent=2)


def write_variant(template_path, out_path, *assignments):
    template = load(template_path)
    parameters = template.get("Parameters", {})
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or name not in parameters:
            sys.exit(f"variant: {assignment!r} is not NAME=VALUE for a parameter of {template_path}")
        allowed = parameters[name].get("AllowedValues")
        if allowed is not None and value not in [str(a) for a in allowed]:
            sys.exit(f"variant: {name}={value} is not one of {allowed}")
        parameters[name]["Default"] = value
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(yaml_dump(template))


if __name__ == "__main__":
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command == "template" and len(args) in (3, 4):
        write_template(*args)
    elif command == "env" and len(args) == 4:
        write_env(*args)
    elif command == "env-vars" and len(args) == 2:
        write_env_vars(*args)
    elif command == "variant" and len(args) >= 3:
        write_variant(*args)
    else:
        sys.exit(__doc__)
