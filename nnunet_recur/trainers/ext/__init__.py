"""The folder ``recur env`` exports as ``nnUNet_extTrainer`` (see nnunet_recur_trainers.py)."""
