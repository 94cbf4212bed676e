"""Applying a new ModelServerConfig to a running server: HandleReloadConfigRequest and a polled config file.

The checks and answers are ServerCore::ReloadConfig's (server_core.cc): model
names listed once and base paths absolute (ValidateModelConfigList), labels
checked before anything changes, and a reload that adds a model which does not
become available answers UNKNOWN with the failed versions and their errors
(WaitUntilModelsAvailable) while everything else it asked for stays applied.
"""

from __future__ import annotations

import grpc

from serving.errors import ServingError
from serving.model_store import AVAILABLE, ModelStore
from serving.tfs_config import ServingConfigError, model_entries


def apply_model_config(store: ModelStore, config, allow_unavailable_labels: bool = False) -> None:
    """Apply ``config`` (a ModelServerConfig holding a model_config_list) to ``store``; raises ServingError."""
    names: set[str] = set()
    for model in config.model_config_list.config:
        if model.name in names:
            raise ServingError.invalid(f"Illegal to list model {model.name} multiple times in config list")
        names.add(model.name)
        if not model.base_path.startswith("/") and "://" not in model.base_path:
            raise ServingError.invalid(f"Expected model {model.name} to have an absolute path or URI; got "
                                       f"base_path()={model.base_path}")
    try:
        entries = model_entries(config) if names else []
    except ServingConfigError as error:
        raise ServingError.invalid(str(error)) from None
    before = set(store.names())
    store.reconfigure(entries, allow_unavailable_labels)
    failures = []
    for name in sorted(names - before):
        states = store.states(name)
        if not any(s.state == AVAILABLE for s in states.values()):
            for version, state in sorted(states.items()):
                error = f" due to error: {state.error_code.name}: {state.error_message}" if state.error_message else ""
                failures.append(f"{{{{name: {name} version: {version}}}{error}}}, ")
            if not states:
                failures.append(f"{{{{name: {name} version: 0}}}}, ")
    if failures:
        raise ServingError(grpc.StatusCode.UNKNOWN,
                           f"{len(failures)} model(s) did not become available: {{{''.join(failures)}}}")
