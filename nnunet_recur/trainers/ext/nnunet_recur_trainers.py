"""The module nnU-Net imports from ``$nnUNet_extTrainer`` (as a top-level name, dropped from sys.modules after
the look-up). It only re-exports: the classes keep ``nnunet_recur.trainers.*`` as their module, so they pickle
by reference and the look-up finds the same class objects on every call and in every process."""

from nnunet_recur.trainers.variants import *  # noqa: F403
from nnunet_recur.trainers.variants import __all__  # noqa: F401
