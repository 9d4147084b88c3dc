r"""The FilterCriteria pattern language: Lambda's patterns, compiled once, matched per record.

A mapping's ``FilterCriteria.Filters[].Pattern`` strings use the EventBridge event-pattern
language. :func:`compile_filter_criteria` validates every pattern at configuration time
(raising :class:`FilterPatternError`, "Invalid filter pattern definition. ...") and
compiles it into closures; :meth:`FilterSet.matches` then answers, for one record shaped
exactly as the handler will receive it, "does any filter match?". Records that match no
filter are acknowledged without invoking the function (SQS: deleted; streams: skipped
past; Kafka: offset committed) -- that is the sources' job, not this package's.

Semantics
---------
* Filters are OR-ed. Inside a pattern the fields are AND-ed, and the values listed for
  one field are OR-ed. A field is matched only if the record has it (except
  ``{"exists": false}``). ``"$or": [{...}, {...}]`` (two or more objects, nestable)
  OR-s sub-patterns at the level where it appears.
* A field's value in the pattern is either a nested object or a non-empty array of
  rules: ``{"a": "x"}`` is invalid, ``{"a": ["x"]}`` is valid, ``{}`` is invalid.
* Rules work on *leaf* values (strings, numbers, booleans, null). An array in the record
  matches if any of its elements matches, and an object pattern applied to an array of
  objects must be satisfied by one single element ("array consistent"). An object in
  the record is not a leaf: ``exists: true`` does not match it, ``exists: false`` does.
* Rules: exact string / number / ``true`` / ``false`` / ``null`` (``""`` is the empty
  string), ``prefix`` and ``suffix`` (plain or ``{"equals-ignore-case": ...}``),
  ``equals-ignore-case``, ``wildcard`` (``*`` matches any run of characters; a backslash
  escapes a literal ``*`` or ``\``, written ``"\\*"`` and ``"\\\\"`` in the JSON
  text; ``**`` is invalid), ``anything-but`` (a string, a number, a list of only strings
  or only numbers, or an object with ``prefix`` / ``suffix`` / ``equals-ignore-case`` /
  ``wildcard``), ``numeric`` (``["=", 5]``, ``["<", 5]``, ``[">", 0, "<=", 5]``),
  ``exists``, ``cidr`` (IPv4 and IPv6). These are EventBridge's operators, whose syntax
  Lambda says it shares; Lambda's own guide lists all but ``wildcard``, ``cidr`` and the
  ``anything-but`` objects, which pumphouse supports as EventBridge defines them.
* Numbers compare as numbers: ``300``, ``300.0`` and ``3.0e2`` are equal, both for
  ``numeric`` and for exact values (this is what event-ruler, the engine behind
  EventBridge, does; Lambda's guide still says exact numbers compare as text, which
  cannot be reproduced once JSON is parsed). A number never matches a string, and
  ``true`` is not ``1``. ``numeric``, ``prefix``, ``suffix``, ``equals-ignore-case``,
  ``wildcard`` and ``cidr`` only match values of their own type; ``anything-but``
  matches every leaf that is not excluded, whatever its type.
* Duplicate keys in a pattern: the last one wins (as Lambda documents).

The data field, per source
--------------------------
The pattern is shaped like the record the handler receives, except that the *data
field* is decoded before matching (at most once per record per ``matches`` call, and
only if a filter names it; the record itself is never mutated or re-serialized):

========  ============  ==================================  ============================
source    pattern key   decoded from                        if it cannot be decoded
========  ============  ==================================  ============================
SQS       ``body``      ``body`` parsed as JSON, else the   (always decodes)
                        raw string
Kinesis   ``data``      ``kinesis.data``: base64, then      filters naming ``data`` do
                        JSON                                not match
DynamoDB  ``dynamodb``  the typed values as delivered       --
Kafka     ``value``,    base64, then UTF-8, then JSON or    filters naming the field do
          ``key``       the plain string                    not match
========  ============  ==================================  ============================

Format mismatches follow Lambda's tables. The data field's pattern is either an object
(the data must be JSON) or a list of value rules (the data is a plain value): an object
pattern against a plain-string SQS body, Kafka value or JSON-scalar Kinesis data does
not match, and value rules against a JSON object do not match either -- not even
``exists: false``. For Kinesis and DynamoDB the data pattern must be an object;
anything else is rejected at configuration time, as Lambda does. An SQS body that is a
JSON scalar (``123``, ``"text"``, ``true``) is matched as its parsed value, so ``[123]``
matches the body ``123`` and ``["123"]`` does not.

Metadata keys are matched as they appear in the record (``attributes``,
``messageAttributes``, ``eventName``, ``topic``, ``partition`` ...). Kinesis metadata may
be written flat, as Lambda's guide shows (``{"partitionKey": ["1"], "data": {...}}``),
or as nested in the record (``{"kinesis": {"partitionKey": ["1"]}}``). DynamoDB numbers
are strings (``{"N": "101"}``), so they match ``["101"]`` and never ``numeric``. Kafka
``headers`` are matched raw (arrays of byte values).

For Kafka, Lambda's guide says that when the value is not UTF-8 or its format does not
match the pattern, "Lambda filters on the other metadata properties only". pumphouse
reads this fail-closed: a filter that names ``value`` (or ``key``) does not match such a
record, while a filter that names only metadata still can. (The literal reading would
let every undecodable record through a value-only filter.)

Limits: a pattern is at most 4096 characters; a mapping has at most ``max_filters``
filters (5, or up to 10 by settings).

Worked example
--------------
An SQS mapping with two filters::

    F1 = {"body": {"type": ["order"], "total": [{"numeric": [">", 100]}]}}
    F2 = {"attributes": {"MessageGroupId": [{"prefix": "vip-"}]}}

``compile_filter_criteria([F1, F2], source=SourceKind.SQS)`` compiles F1 to "body is
JSON, body.type is 'order' and body.total is a number > 100", and F2 to "attributes has
a MessageGroupId starting with 'vip-'". Three records arrive:

1. body ``{"type": "order", "total": 250}`` -- F1: ``type`` matches, ``250 > 100``:
   **match**, F2 is not evaluated.
2. body ``{"type": "order", "total": "250"}``, group ``vip-7`` -- F1: ``"250"`` is a
   string, ``numeric`` never matches strings, so F1 fails; F2: ``vip-7`` starts with
   ``vip-``: **match**. Had F2 named ``body`` too, it would have reused F1's parse.
3. body ``order 250`` (not JSON), group ``std-1`` -- F1: an object pattern against a
   plain-string body does not match; F2: ``std-1`` has the wrong prefix: **no match**,
   the message is deleted without invoking the function.

Modules
-------
The configuration (to refuse an invalid pattern by its path) and the pollers (to drop
the records no filter matches) both use this package; it imports neither.

* ``criteria`` -- :func:`compile_filter_criteria` and :class:`FilterSet`: the pattern
  strings parsed, the record root compiled, the per-record ``matches``.
* ``records`` -- the record per source: which field is the data field and how it is
  decoded, lazily and once per record.
* ``fields`` -- a field's rule list or nested object applied to whatever the record holds
  there (leaves, arrays, objects, nothing), array consistency and ``$or``.
* ``rules`` -- the leaf rules and operators, validated and compiled into leaf tests.
* ``errors`` and ``terms`` -- :class:`FilterPatternError`, and the limits, sentinels and
  matcher types the others share.
"""

from pumphouse.patterns.criteria import FilterSet, compile_filter_criteria
from pumphouse.patterns.errors import FilterPatternError
from pumphouse.patterns.terms import (
    DEFAULT_MAX_FILTERS,
    MAX_PATTERN_DEPTH,
    MAX_PATTERN_LENGTH,
    SourceKind,
)

__all__ = [
    "DEFAULT_MAX_FILTERS",
    "MAX_PATTERN_DEPTH",
    "MAX_PATTERN_LENGTH",
    "FilterPatternError",
    "FilterSet",
    "SourceKind",
    "compile_filter_criteria",
]
