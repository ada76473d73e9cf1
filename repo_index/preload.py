"""Imported once by the forkserver that step processes fork from (see jobs.py).

Every step process rebuilds the Dagster instance from its reference, which imports the
instance's storage classes (SQLAlchemy, Alembic, ...): about a second of CPU per step when
the forkserver has only the project loaded. Importing them here, with chromadb, makes
every step start from a process that already has them. An optimisation only: nothing
here may fail a run.
"""

import contextlib
import importlib

import repo_index.definitions  # noqa: F401
from repo_index.core.settings import get_settings


def _instance_class_modules() -> list[str]:
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import ConfigurableClassData

    settings = get_settings()
    ref = InstanceRef.from_dir(str(settings.instance_dir()))
    return [v.module_name for v in ref._asdict().values() if isinstance(v, ConfigurableClassData)]


with contextlib.suppress(Exception):
    for _name in [*_instance_class_modules(), "dagster._core.instance.factory", "dagster._core.secrets.env_file",
                  "dagster._core.storage.migration", "upath.implementations.local", "chromadb"]:
        with contextlib.suppress(Exception):
            importlib.import_module(_name)
