"""Alembic environment for sim_cms: its own tables plus the kernel's."""

from sim_cms.models import Base
from simkit.migrate import run_env
from simkit.models import KernelBase

run_env([KernelBase.metadata, Base.metadata])
