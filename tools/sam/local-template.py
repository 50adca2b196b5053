"""Writes the template `sam local invoke` runs: template.yaml with QuayFunction's CodeUri
pointing at a directory holding the already built bootstrap, as `sam build` would write it.

Also declares, with empty defaults, the variables of the env-vars file that the template does
not declare (AWS_ENDPOINT_URL for the local moto server): `sam local invoke --env-vars` only
overrides variables the function declares, and AWS_REGION/AWS_ACCESS_KEY_ID/
AWS_SECRET_ACCESS_KEY, which Lambda reserves, come from the caller's credentials instead.
Only this local copy gets them; the deployable template.yaml stays free of test settings.

`env` writes the function's environment instead (template defaults, then the env-vars
file's values) as KEY=VALUE lines, for running the bootstrap without a container.

Usage (with the SAM CLI's Python, .venv-sam/bin/python):
  local-template.py template TEMPLATE OUT_TEMPLATE CODE_DIR [ENV_VARS_JSON]
  local-template.py env TEMPLATE ENV_VARS_JSON OUT_ENV_FILE
"""

import json
import os
import sys

from samcli.yamlhelper import yaml_dump, yaml_parse

FUNCTION = "QuayFunction"
# Set by SAM from the credentials of the `sam` process (and reserved by Lambda).
FROM_CREDENTIALS = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def write_template(template_path, out_path, code_dir, env_path=None):
    with open(template_path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    function = template["Resources"][FUNCTION]
    function.pop("Metadata", None)  # already built: nothing for SAM to build
    props = function["Properties"]
    props["CodeUri"] = os.path.relpath(code_dir, os.path.dirname(os.path.abspath(out_path)))
    if env_path:
        with open(env_path, encoding="utf-8") as f:
            overrides = json.load(f).get(FUNCTION, {})
        variables = props.setdefault("Environment", {}).setdefault("Variables", {})
        for name in overrides:
            if name not in variables and name not in FROM_CREDENTIALS:
                variables[name] = ""
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(yaml_dump(template))


def write_env(template_path, env_path, out_path):
    with open(template_path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    parameters = template.get("Parameters", {})
    declared = template["Resources"][FUNCTION]["Properties"].get("Environment", {}).get("Variables", {})
    env = {}
    for name, value in declared.items():
        if isinstance(value, dict) and set(value) == {"Ref"}:
            value = parameters[value["Ref"]].get("Default", "")
        if not isinstance(value, str):
            sys.exit(f"{name}: cannot resolve {value!r} without CloudFormation")
        env[name] = value
    with open(env_path, encoding="utf-8") as f:
        env.update(json.load(f).get(FUNCTION, {}))
    with open(out_path, "w", encoding="utf-8") as f:
        for name, value in env.items():
            if "\n" in str(value):
                sys.exit(f"{name}: multi-line values are not supported")
            f.write(f"{name}={value}\n")


if __name__ == "__main__":
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command == "template" and len(args) in (3, 4):
        write_template(*args)
    elif command == "env" and len(args) == 3:
        write_env(*args)
    else:
        sys.exit(__doc__)
