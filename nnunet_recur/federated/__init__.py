"""Federated nnU-Net training on Flower: sites share model weights and a few named metrics, never images.

Modules, one job each:

- ``fedavg``: the aggregation maths (FedAvg weighted by cases) and the weight-shape check;
- ``fingerprint``: per-site fingerprint summaries and their case-weighted merge (federated plans);
- ``shared_plans``: the one plan every site trains with, its hash, the refusal of a site with other plans;
- ``model_folder``: the initial network and the best round saved as a standard nnU-Net model folder;
- ``local_training``: what a site runs in a round (nnUNetTrainerRecur for E epochs, whole-volume validation);
- ``rounds``: the server's round loop (min-sites, stragglers, resume, best round);
- ``apps``: the Flower ClientApp and ServerApp that wire the above to Flower's Message API;
- ``deployment``: SuperLink, SuperNodes and `flwr run` as processes (TLS, certificates), used by the CLI.

Flower (``flwr``) is an optional extra: ``pip install nnunet-recur[federated]``. See docs/federated.md.
"""
