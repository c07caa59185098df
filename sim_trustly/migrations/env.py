"""Alembic environment for sim_trustly: its own tables plus the kernel's."""

from sim_trustly.models import Base
from simkit.migrate import run_env
from simkit.models import KernelBase

run_env([KernelBase.metadata, Base.metadata])
