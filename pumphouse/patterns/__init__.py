"""The FilterCriteria pattern language: Lambda's ``FilterCriteria`` patterns, validated
and compiled once, matched per record. Used by the configuration (to refuse an invalid
pattern by its path) and by the pollers (to drop the records that match no filter)."""

from pumphouse.patterns.criteria import (
    DEFAULT_MAX_FILTERS,
    MAX_PATTERN_DEPTH,
    MAX_PATTERN_LENGTH,
    FilterPatternError,
    FilterSet,
    SourceKind,
    compile_filter_criteria,
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
