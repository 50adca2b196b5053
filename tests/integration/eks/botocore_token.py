#!/usr/bin/env python3
"""Prints the EKS bearer token botocore makes, exactly as `aws eks get-token` does, for frozen
inputs: the golden reference of quayhook's token generator (tests/integration/eks.rs runs it
with `.venv/bin/python`, where botocore comes with moto).

Usage: botocore_token.py CLUSTER REGION ACCESS_KEY SECRET_KEY SESSION_TOKEN EPOCH_SECONDS
(SESSION_TOKEN `-` for long-term credentials). No network: presigning is local.

The recipe is aws-cli's awscli/customizations/eks/get_token.py: an STS client for the region,
`generate_presigned_url('get_caller_identity', ExpiresIn=60, HttpMethod='GET')` with the
`x-k8s-aws-id` header injected before signing, then `k8s-aws-v1.` + unpadded base64url.
"""
import base64
import datetime
import sys

import botocore.auth
import botocore.session

K8S_AWS_ID_HEADER = "x-k8s-aws-id"


def token(cluster, region, access_key, secret_key, session_token, epoch):
    frozen = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    # botocore.auth reads the clock through this one function.
    botocore.auth.get_current_datetime = lambda *args, **kwargs: frozen
    session = botocore.session.get_session()
    # No profile, no environment: only what the arguments say.
    session.set_config_variable("sts_regional_endpoints", "regional")
    sts = session.create_client(
        "sts",
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
    )

    def retrieve(params, context, **kwargs):
        if K8S_AWS_ID_HEADER in params:
            context[K8S_AWS_ID_HEADER] = params.pop(K8S_AWS_ID_HEADER)

    def inject(request, **kwargs):
        if K8S_AWS_ID_HEADER in request.context:
            request.headers[K8S_AWS_ID_HEADER] = request.context[K8S_AWS_ID_HEADER]

    sts.meta.events.register("provide-client-params.sts.GetCallerIdentity", retrieve)
    sts.meta.events.register("before-sign.sts.GetCallerIdentity", inject)
    url = sts.generate_presigned_url(
        "get_caller_identity",
        Params={K8S_AWS_ID_HEADER: cluster},
        ExpiresIn=60,
        HttpMethod="GET",
    )
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode("utf-8")).decode("utf-8").rstrip("=")


def main(argv):
    if len(argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    cluster, region, access_key, secret_key, session_token, epoch = argv[1:]
    print(token(cluster, region, access_key, secret_key, None if session_token == "-" else session_token, int(epoch)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
