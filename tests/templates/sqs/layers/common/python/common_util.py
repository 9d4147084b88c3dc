"""A module the sqs template's function imports from its layer."""

TAG = "from-layer"
