"""The run configuration's old home: it lives in `relational_rnn.config` (below the tasks, which use it)."""

from ..config import CONFIG_KEYS, ConfigError, RunConfig, TrainConfig, check_value, coerce, field_descriptions, section_from_dict

__all__ = ["CONFIG_KEYS", "ConfigError", "RunConfig", "TrainConfig", "check_value", "coerce", "field_descriptions", "section_from_dict"]
