"""Lambda's event-source-mapping REST API, so that the AWS CLI, boto3 and the other AWS
SDKs manage pumphouse's mappings with ``--endpoint-url`` / ``endpoint_url``.

* :mod:`pumphouse.api.auth` — SigV4 verification with botocore's signer;
* :mod:`pumphouse.api.server` — the routes (rest-json, as botocore's ``lambda`` model);
* :mod:`pumphouse.api.shapes` — request bodies to mapping parameters, mappings to
  ``EventSourceMappingConfiguration``;
* :mod:`pumphouse.api.errors` — AWS's error shape.

What a change does to the running mappings is :mod:`pumphouse.live`'s.
"""

from pumphouse.api.auth import SignatureVerifier
from pumphouse.api.server import ApiServer, MappingControl, start_api

__all__ = ["ApiServer", "MappingControl", "SignatureVerifier", "start_api"]
