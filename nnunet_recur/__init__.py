"""nnunet-recur: voxel-wise prediction of post-radiotherapy recurrence in head-and-neck cancer.

An nnU-Net v2 plugin reproducing Kutnar et al. (2023), "Prediction of post-radiotherapy recurrence
volumes in head and neck squamous cell carcinoma using 3D U-Net segmentation".
"""

__version__ = "0.1.0"
