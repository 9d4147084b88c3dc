"""pumphouse: self-hosted AWS Lambda event source mappings."""

__version__ = "0.1.0"
