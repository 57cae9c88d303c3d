"""One sigmoid channel per label: how our trainers read dataset.json's labels (pure functions).

The paper's network has one sigmoid output (relapse yes/no). nnU-Net gives sigmoid outputs only to
*region-based* datasets, and nnunetv2 2.8.1 (``LabelManager``) calls a dataset region-based only when some
label maps to a list of **more than one** value: ``{"background": 0, "relapse": [1]}`` with
``"regions_class_order": [1]`` is read as plain labels - softmax over 2 channels (background, relapse),
2-channel probability files.

Our trainers therefore rewrite each single-valued foreground label ``[k]`` (or ``k``) to the equivalent region
``[k, k]`` before nnU-Net builds its label manager. The voxels selected are the same; nnU-Net now trains and
predicts one sigmoid channel per label, exports ``probabilities`` of shape (n_labels, z, y, x) and masks with
the values of ``regions_class_order``. The trainer saves this dataset.json next to the model, so
``nnUNetv2_predict`` uses it too. The raw dataset.json keeps the converter's form.
"""

from __future__ import annotations

from copy import deepcopy


def sigmoid_region_labels(dataset_json: dict) -> dict:
    """dataset.json with every foreground label as a region of >= 2 entries (``[k]`` -> ``[k, k]``).

    Labels that already are multi-value regions stay; ``regions_class_order`` defaults to the label values in
    dataset.json order when missing. Example: ``{"background": 0, "relapse": [1]}`` -> ``{"background": 0,
    "relapse": [1, 1]}`` with ``"regions_class_order": [1]``.
    """
    converted = deepcopy(dataset_json)
    labels = {}
    order = []
    for name, value in dataset_json["labels"].items():
        if name in ("background", "ignore"):
            labels[name] = value
            continue
        values = list(value) if isinstance(value, list | tuple) else [value]
        if not values or {int(v) for v in values} == {0}:
            raise ValueError(f"dataset.json label {name!r} = {value!r} selects no foreground voxels")
        labels[name] = values if len(values) > 1 else [int(values[0]), int(values[0])]
        order.append(int(values[0]) if len(set(values)) == 1 else int(max(values)))
    converted["labels"] = labels
    converted.setdefault("regions_class_order", order)
    if len(converted["regions_class_order"]) != len(order):
        raise ValueError(
            f"dataset.json: regions_class_order {converted['regions_class_order']} must have one entry per "
            f"foreground label ({len(order)})"
        )
    return converted
