"""pumphouse's configuration: ``Settings``, ``Functions`` and ``EventSourceMappings``,
with the AWS API's own names, loaded from YAML.

>>> config = load_config("pumphouse.yaml")  # doctest: +SKIP
>>> for mapping in config.EventSourceMappings:  # doctest: +SKIP
...     print(mapping.label, mapping.batch_size, config.function_for(mapping).Timeout)
"""

from pumphouse.config.loader import load_config, parse_config, parse_mapping
from pumphouse.config.model import (
    AmazonManagedKafkaEventSourceConfig,
    Config,
    DestinationConfig,
    DevResources,
    EventSourceMapping,
    FilterCriteria,
    Function,
    FunctionEnvironment,
    FunctionResponseType,
    KafkaConsumerOverrides,
    KafkaConsumerSettings,
    LogFormat,
    LogLevel,
    MetricsConfig,
    ScalingConfig,
    SelfManagedEventSource,
    SelfManagedKafkaEventSourceConfig,
    ServiceEndpoints,
    Settings,
    SourceAccessConfiguration,
    SourceAccessType,
    StartingPosition,
)
from pumphouse.config.sources import Destination, DestinationType, SourceType
from pumphouse.errors import ConfigError

__all__ = [
    "AmazonManagedKafkaEventSourceConfig",
    "Config",
    "ConfigError",
    "Destination",
    "DestinationConfig",
    "DestinationType",
    "DevResources",
    "EventSourceMapping",
    "FilterCriteria",
    "Function",
    "FunctionEnvironment",
    "FunctionResponseType",
    "KafkaConsumerOverrides",
    "KafkaConsumerSettings",
    "LogFormat",
    "LogLevel",
    "MetricsConfig",
    "ScalingConfig",
    "SelfManagedEventSource",
    "SelfManagedKafkaEventSourceConfig",
    "ServiceEndpoints",
    "Settings",
    "SourceAccessConfiguration",
    "SourceAccessType",
    "SourceType",
    "StartingPosition",
    "load_config",
    "parse_config",
    "parse_mapping",
]
